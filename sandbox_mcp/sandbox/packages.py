"""The Python packages snippets may import, and what their interpreter needs to find them.

`scripts/install-runtimes` installs them from requirements/snippets.txt into their own
virtual environment, `PREFIX`, apart from the server's. The snippets' interpreter stays
/usr/bin/python3 (the warm template forks it): the environment's site-packages and
`snippet_site/` (matplotlib's backend for snippets) come on its path through PYTHONPATH.

Matplotlib draws with its own backend (snippet_site/sandbox_plots.py: Agg, `show()` saves
PNGs). Its font list was built at install time into `PREFIX/matplotlib`, which no run may
write; each run's MPLCONFIGDIR is `.tmp/matplotlib` in its workdir, holding a symbolic link
to that font list, so matplotlib reads it instead of spending a second or more rebuilding it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from pathlib import Path

PREFIX = Path("/opt/sandbox-mcp-python")
SNIPPET_SITE = Path(__file__).resolve().parent / "snippet_site"
# The packages asked for in requirements/snippets.in; the others are their dependencies.
CURATED = ("numpy", "pandas", "matplotlib", "scipy", "sympy", "pillow", "tabulate")
# Where a run's MPLCONFIGDIR is, relative to its workdir.
MPL_CONFIG_DIR = ".tmp/matplotlib"


def site_packages() -> Path | None:
    """The environment's site-packages, or None when it is not installed."""
    found = sorted(PREFIX.glob("lib/python3*/site-packages"))
    return found[-1] if found else None


def installed() -> tuple[tuple[str, str], ...]:
    """(name, version) of each installed distribution, from its .dist-info folder's name."""
    site = site_packages()
    if site is None:
        return ()
    found = []
    for info in site.glob("*.dist-info"):
        match = re.fullmatch(r"(.+?)-([^-]+)\.dist-info", info.name)
        if match:
            found.append((match.group(1).replace("_", "-").lower(), match.group(2)))
    return tuple(sorted(found))


def curated() -> list[str]:
    """The names of the curated packages that are installed."""
    present = {name for name, _version in installed()}
    return [name for name in CURATED if name in present]


def environment() -> dict[str, str]:
    """The variables a Python run gets for the packages; `{tmp}` is the run's TMPDIR."""
    site = site_packages()
    path = [str(site)] if site else []
    return {
        "PYTHONPATH": ":".join([*path, str(SNIPPET_SITE)]),
        "MPLBACKEND": "module://sandbox_plots",
        "MPLCONFIGDIR": "{tmp}/matplotlib",
    }


@functools.cache
def _links() -> tuple[tuple[str, str], ...]:
    # Read once: the font list is built at install time, and every Python run asks.
    return tuple(
        (f"{MPL_CONFIG_DIR}/{cache.name}", str(cache))
        for cache in sorted((PREFIX / "matplotlib").glob("fontlist-*.json"))
    )


def workdir_links() -> list[list[str]]:
    """[path in the workdir, target] of the links a Python run's workdir gets."""
    return [list(link) for link in _links()]


def missing_module_hints(stderr_text: str) -> Iterator[str]:
    """A note for each module a run could not import: what there is, and that the network
    is closed to installing more."""
    for name in dict.fromkeys(
        re.findall(r"ModuleNotFoundError: No module named '([^']+)'", stderr_text)
    ):
        available = ", ".join(f"{package} {version}" for package, version in installed())
        yield (
            f"module {name!r} is not installed and cannot be: snippets have no network, so "
            f"pip install fails. Available besides the standard library: {available or 'nothing'}"
        )
