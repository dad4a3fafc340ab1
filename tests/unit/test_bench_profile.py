"""bench/profile.py's reading of py-spy's collapsed stacks: which frames hold the samples."""

from __future__ import annotations

from pathlib import Path

from bench.profile import frame_name, read_collapsed, summarise

COLLAPSED = "\n".join(
    [
        "main (bench/server.py:10);serve (server/app.py:20);digest (hmac.py:30) 6",
        "main (bench/server.py:10);serve (server/app.py:21) 3",
        "main (bench/server.py:10);write (libc.so.6) 1",
        "This module allows high-level and efficient I/O multiplexing",  # torn by --nonblocking
    ]
)


def test_a_frame_is_its_module_and_function_without_the_line() -> None:
    path = "/work/main/.venv/lib/python3.11/site-packages/grpc/aio/_server.py"
    assert frame_name(f"start ({path}:123)") == "grpc/aio/_server.py:start"
    assert frame_name("digest (hmac.py:30)") == "hmac.py:digest"


def test_self_and_total_shares_of_the_samples() -> None:
    summary = summarise(COLLAPSED, top=3)
    assert summary.startswith("10 samples")
    own, total = summary.split("total (with callees)")
    assert "| `hmac.py:digest` | 60.0 |" in own
    assert "| `server/app.py:serve` | 30.0 |" in own  # both of its lines are one row
    assert "| `bench/server.py:main` | 100.0 |" in total
    assert "| `server/app.py:serve` | 90.0 |" in total
    assert "I/O multiplexing" not in summary


def test_a_frame_name_torn_mid_character_does_not_fail_the_profile(tmp_path: Path) -> None:
    raw = tmp_path / "stacks.txt"
    raw.write_bytes(COLLAPSED.encode() + b"\nmain (bench/server.py:10);gr\xfc (x.py:1) 10\n")
    summary = summarise(read_collapsed(raw), top=3)
    assert summary.startswith("20 samples")
    assert "| `bench/server.py:main` | 100.0 |" in summary
