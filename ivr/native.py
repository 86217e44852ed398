"""The call's hot path compiled to C with mypyc, used when it matches the source.

The modules a FastAGI call runs for every command (the AGI link, the call, the reply
parser, the interpreter, the call state and turns) are plain, strictly typed Python.
`ivr native build` compiles them with mypyc into `.native/` beside the `ivr` package
(`./dev` does it on set-up when a C compiler is there); under load that takes up to a
quarter of the CPU a command costs off (16 to 12 µs at 100 saturated calls). At import,
`install()` puts a finder in front of Python's that loads the compiled modules only
when every source is, byte for byte, the one they were built from: an edited source,
another Python, or no build at all, and the package runs as plain Python, as it always
can. The sources checked are the compiled
modules and every module of the package they import (the compiled code relies on their
types). `IVR_NATIVE=0` turns it off.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
import sysconfig
import types
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

#: the modules compiled, in the order their sources are hashed
MODULES = (
    "ivr.channels.asterisk.protocol",
    "ivr.channels.asterisk.call",
    "ivr.channels.asterisk.fastagi",
    "ivr.engine.state",
    "ivr.engine.turn",
    "ivr.engine.interpreter",
)
#: mypyc puts the compiled code of all the modules in one library; each module is a shim
GROUP = "ivr.hotpath"
LIBRARY = GROUP + "__mypyc"
MANIFEST = "manifest.json"
PACKAGE_ROOT = Path(__file__).resolve().parent.parent


class NativeBuildError(Exception):
    """The compiled modules could not be built; the message says what to install or fix."""


def platform_tag() -> str:
    """Compiled modules fit one Python build: the folder they go in is named after it."""
    return str(sysconfig.get_config_var("EXT_SUFFIX") or ".so").strip(".").rsplit(".", 1)[0]


def default_folder(root: Path = PACKAGE_ROOT) -> Path:
    return Path(os.environ.get("IVR_NATIVE_DIR") or root / ".native") / platform_tag()


def source_path(module: str, root: Path) -> Path:
    package = root.joinpath(*module.split("."))
    return package / "__init__.py" if package.is_dir() else package.with_suffix(".py")


def digest(module: str, root: Path) -> str:
    return hashlib.sha256(source_path(module, root).read_bytes()).hexdigest()


def digests(modules: Sequence[str], root: Path) -> dict[str, str]:
    return {name: digest(name, root) for name in modules}


def dependencies(modules: Sequence[str], root: Path) -> list[str]:
    """`modules` and every module of their packages they import, directly or not. The
    compiled code relies on the types and signatures of what it imports: a change to
    any of these makes the build stale, not only a change to the compiled modules."""
    import ast

    top = {name.split(".")[0] for name in modules}
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        name = todo.pop()
        if name in seen or not source_path(name, root).is_file():
            continue
        seen.add(name)
        for node in ast.walk(ast.parse(source_path(name, root).read_bytes())):
            found: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                found = [alias.name for alias in node.names]
            for imported in found:
                parts = imported.split(".")
                if parts[0] in top:  # the module and the packages it is in
                    todo += [".".join(parts[:end]) for end in range(1, len(parts) + 1)]
    return sorted(seen)


@dataclass(frozen=True)
class Status:
    """Whether the compiled modules can be used, and if not, why."""

    usable: bool
    reason: str
    folder: Path

    @property
    def line(self) -> str:
        """What `ivr native status` and the FastAGI server's start-up say."""
        return f"hot path: {self.reason}" if self.usable else f"hot path: plain Python ({self.reason})"


def check(folder: Path, modules: Sequence[str] = MODULES, root: Path = PACKAGE_ROOT,
          library: str = LIBRARY) -> Status:
    manifest_path = folder / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        return Status(False, f"not built (run 'ivr native build' to compile it into {folder})", folder)
    except (OSError, ValueError) as exc:
        return Status(False, f"{manifest_path} is unreadable ({exc}); run 'ivr native build'", folder)
    if manifest.get("python") != sys.version or manifest.get("tag") != platform_tag():
        return Status(False, f"built for Python {manifest.get('python', '?').split()[0]}, "
                             f"not {sys.version.split()[0]}; run 'ivr native build'", folder)
    built: dict[str, str] = manifest.get("sources", {})
    if manifest.get("compiled") != list(modules):
        return Status(False, "the build compiled other modules (it is from another version); "
                             "run 'ivr native build'", folder)
    changed = []
    for name, recorded in sorted(built.items()):
        try:
            if digest(name, root) != recorded:
                changed.append(name)
        except OSError:
            changed.append(name)
    if changed:
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        return Status(False, f"{', '.join(changed[:3])}{more} changed since the build; "
                             "run 'ivr native build'", folder)
    missing = [name for name in (*modules, library) if not _extension(folder, name).is_file()]
    if missing:
        return Status(False, f"{', '.join(missing)} missing from {folder}; run 'ivr native build'", folder)
    return Status(True, f"compiled ({folder})", folder)


def _extension(folder: Path, module: str) -> Path:
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    return folder.joinpath(*module.split(".")).with_name(module.rsplit(".", 1)[-1] + suffix)


class _Finder(importlib.abc.MetaPathFinder):
    """Finds the compiled modules (and their shared library) in the build folder."""

    def __init__(self, folder: Path, names: Sequence[str]) -> None:
        self.folder = folder
        self.names = frozenset(names)

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: types.ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.names:
            return None
        location = str(_extension(self.folder, fullname))
        loader = importlib.machinery.ExtensionFileLoader(fullname, location)
        return importlib.util.spec_from_file_location(fullname, location, loader=loader)


#: what `install` found, for the server's start-up line and `ivr native status`
status: Status = Status(False, "not looked for", default_folder())


def install(folder: Path | None = None, modules: Sequence[str] = MODULES, root: Path = PACKAGE_ROOT,
            library: str = LIBRARY) -> Status:
    """Use the compiled modules from now on if they match the sources (before any of them
    is imported); otherwise leave the import system as it is."""
    global status
    if os.environ.get("IVR_NATIVE", "1") == "0":
        status = Status(False, "off (IVR_NATIVE=0)", folder or default_folder(root))
        return status
    try:
        found = check(folder or default_folder(root), modules, root, library)
    except Exception as exc:  # a damaged build must never keep the package from importing
        found = Status(False, f"the build could not be checked ({exc!r}); run 'ivr native build'",
                       folder or default_folder(root))
    loaded = [name for name in modules if name in sys.modules]
    if found.usable and loaded:
        found = Status(False, f"{', '.join(loaded)} imported before the compiled modules were looked "
                              "for", found.folder)
    if found.usable:
        sys.meta_path.insert(0, _Finder(found.folder, [*modules, library]))
    status = found
    return status


def compiled(module: types.ModuleType) -> bool:
    """True when `module` is running from a compiled extension."""
    spec = getattr(module, "__spec__", None)
    return spec is not None and isinstance(spec.loader, importlib.machinery.ExtensionFileLoader)


def build(folder: Path | None = None, modules: Sequence[str] = MODULES, root: Path = PACKAGE_ROOT,
          group: str = GROUP, quiet: bool = True) -> Path:
    """Compile `modules` (found under `root`) into `folder`, replacing what was there.

    mypyc type-checks them first (as `mypy --strict` would) and a C compiler builds the
    result; the manifest written last records the sources' digests, so a build that
    failed half-way is never used."""
    import shutil
    import subprocess
    import tempfile

    folder = folder or default_folder(root)
    compiler = str(sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        raise NativeBuildError("no C compiler: install one (on Debian: apt-get install gcc) and run again")
    try:
        import mypyc  # noqa: F401
    except ImportError:
        raise NativeBuildError("mypyc is not installed: pip install mypy (the dev extra has it)") from None
    sources = digests(dependencies(modules, root), root)
    with tempfile.TemporaryDirectory(prefix="ivr-native-") as tmp:
        out = Path(tmp) / "lib"
        script = (
            "import sys\n"
            "from setuptools import setup\n"
            "from mypyc.build import mypycify\n"
            "paths, group, out, temp = sys.argv[1].split(','), sys.argv[2], sys.argv[3], sys.argv[4]\n"
            "modules = mypycify(paths, group_name=group, target_dir=temp + '/c')\n"
            "setup(name='ivr-native', ext_modules=modules,\n"
            "      script_args=['-q', 'build_ext', '--build-lib', out, '--build-temp', temp])\n")
        paths = ",".join(str(source_path(name, root).relative_to(root)) for name in modules)
        done = subprocess.run([sys.executable, "-c", script, paths, group, str(out), tmp], cwd=root,
                              capture_output=quiet, text=True)
        if done.returncode != 0:
            detail = (done.stdout or "") + (done.stderr or "") if quiet else ""
            lines = [line for line in detail.splitlines() if "error" in line.lower()] or detail.splitlines()
            raise NativeBuildError("mypyc could not compile the hot path:\n" + "\n".join(lines[-20:]))
        if digests(list(sources), root) != sources:
            raise NativeBuildError("a source changed while it was being compiled; run the build again")
        if folder.exists():
            shutil.rmtree(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(out, folder)
    manifest = {"python": sys.version, "tag": platform_tag(), "compiled": list(modules), "sources": sources}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return folder
