"""The integration suite: real servers on port 0 over real databases. Its fixtures are the
shared ones (tests/support/harness.py, tests/support/databases.py), registered in
tests/conftest.py."""
