"""constraints.txt, which `make install` and CI install from, is the lock of pyproject.toml: it
pins every package pyproject.toml asks for, directly or through a dependency, at a version its
ranges allow, and nothing else; and this virtualenv holds exactly those versions. A dependency
changed in pyproject.toml without `make lock` fails here, saying what to run."""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO_ROOT = Path(__file__).resolve().parents[2]
# Installed in every virtualenv, asked for by no requirement, pinned all the same.
PACKAGING_TOOLS = {"pip", "setuptools", "wheel"}
REGENERATE = "pyproject.toml and constraints.txt disagree: run `make lock`, then `make install`"


def project_requirements(pyproject: str) -> list[Requirement]:
    """The runtime dependencies and the dev extra, which is what `make install` installs."""
    project = tomllib.loads(pyproject)["project"]
    return [Requirement(text) for text in project["dependencies"]] + [
        Requirement(text) for text in project["optional-dependencies"]["dev"]
    ]


def pins(constraints: str) -> dict[str, Version]:
    """{canonical name: version} of the `name==version` lines of a constraints file."""
    pinned: dict[str, Version] = {}
    for line in constraints.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, separator, version = line.partition("==")
        assert separator, f"constraints.txt: {line!r} is not a name==version pin"
        pinned[canonicalize_name(name)] = Version(version)
    return pinned


def lock_problems(
    requirements: Iterable[Requirement],
    pinned: dict[str, Version],
    requires_of: Callable[[str], list[Requirement]],
) -> list[str]:
    """What keeps `pinned` from being the lock of `requirements`: a package reached from them
    (through `requires_of`, a package's own requirements) that has no pin or a pin its range
    excludes, and a pin that nothing reaches."""
    problems = []
    reached: set[str] = set()
    queue = [(requirement, {""}) for requirement in requirements]
    while queue:
        requirement, extras_asked = queue.pop()
        marker = requirement.marker
        if marker and not any(marker.evaluate({"extra": extra}) for extra in extras_asked):
            continue
        name = canonicalize_name(requirement.name)
        version = pinned.get(name)
        if version is None:
            problems.append(f"{requirement} is not pinned")
            continue
        if not requirement.specifier.contains(version, prereleases=True):
            problems.append(f"{requirement} excludes the pinned {name}=={version}")
        key = f"{name}[{','.join(sorted(requirement.extras))}]"
        if key in reached:
            continue
        reached.add(key)
        extras = {"", *requirement.extras}
        queue.extend((dependency, extras) for dependency in requires_of(name))
    reached_names = {key.split("[", 1)[0] for key in reached}
    problems += [
        f"{name}=={pinned[name]} is pinned but nothing asks for it"
        for name in sorted(set(pinned) - reached_names - PACKAGING_TOOLS)
    ]
    return problems


def installed_requires(name: str) -> list[Requirement]:
    return [Requirement(text) for text in metadata.requires(name) or []]


def test_constraints_txt_is_the_lock_of_pyproject() -> None:
    problems = lock_problems(
        project_requirements((REPO_ROOT / "pyproject.toml").read_text()),
        pins((REPO_ROOT / "constraints.txt").read_text()),
        installed_requires,
    )
    assert problems == [], REGENERATE + ":\n  " + "\n  ".join(problems)


def test_this_virtualenv_holds_the_pinned_versions() -> None:
    """What the tests run on is what CI installs: `make install` installed from the lock."""
    pinned = pins((REPO_ROOT / "constraints.txt").read_text())
    installed: dict[str, Version] = {
        canonicalize_name(dist.metadata["Name"]): Version(dist.version)
        for dist in metadata.distributions()
    }
    different = [
        f"{name}: pinned {version}, installed {installed.get(name, 'nothing')}"
        for name, version in sorted(pinned.items())
        if installed.get(name) != version
    ]
    assert different == [], "run `make install`:\n  " + "\n  ".join(different)


def test_a_pyproject_change_without_make_lock_is_caught() -> None:
    """The check can fail: a raised floor, a new dependency, a new dependency's own
    requirements, and a dropped one each show up by name."""
    requires = {
        "sqlalchemy": [Requirement('greenlet>=1; extra == "asyncio"')],
        "greenlet": [],
        "httpx": [],
    }
    pinned = {name: Version("2.0") for name in requires}
    locked = [Requirement("SQLAlchemy[asyncio]>=2"), Requirement("httpx")]
    assert lock_problems(locked, pinned, requires.__getitem__) == []

    raised = [Requirement("SQLAlchemy[asyncio]>=2.1"), Requirement("httpx")]
    assert lock_problems(raised, pinned, requires.__getitem__) == [
        "SQLAlchemy[asyncio]>=2.1 excludes the pinned sqlalchemy==2.0"
    ]
    added = [Requirement("SQLAlchemy[asyncio]>=2"), Requirement("httpx"), Requirement("rich")]
    assert lock_problems(added, pinned, requires.__getitem__) == ["rich is not pinned"]
    without_extra = [Requirement("SQLAlchemy>=2"), Requirement("httpx")]
    assert lock_problems(without_extra, pinned, requires.__getitem__) == [
        "greenlet==2.0 is pinned but nothing asks for it"
    ]


def test_the_pins_are_read_from_pip_freeze_lines() -> None:
    text = "# generated\nPyJWT==2.15.1\nprometheus_client==0.26.0  # note\n\n"
    assert pins(text) == {"pyjwt": Version("2.15.1"), "prometheus-client": Version("0.26.0")}
