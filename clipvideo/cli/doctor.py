"""`python -m clipvideo doctor`: can this Python environment run the pipeline? Each problem is one line naming its fix.

An installer can leave a torchvision built for another torch than the one installed (torch from one index,
torchvision from another, or one of them upgraded alone); embed then dies a minute into the first run with `operator
torchvision::nms does not exist`. The check_params stage, first in every `dvc repro` that computes anything,
runs the same check before any work. The imports run in a child process: a broken build can crash the
interpreter instead of raising, and the stage that checks never needs torch itself.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from clipvideo.cli.stage import command_parser
from clipvideo.core.errors import PipelineError
from clipvideo.core.system import ffmpeg_binary

# What the pipeline imports, in import order, with its distribution name; and what each one imports of the others.
MODULES = {"torch": "torch", "torchvision": "torchvision", "av": "av", "open_clip": "open_clip_torch"}
NEEDS = {"torchvision": ("torch",), "open_clip": ("torch", "torchvision")}
PYTORCH_INDEX = "https://download.pytorch.org/whl"  # + /cpu: where a `+cpu` build comes from
SYNC = "uv sync --locked --extra dev"  # the lock's versions and builds, as ./dev.sh installs them (docs/environment.md)
TORCHVISION_MINOR_OFFSET = 15  # torchvision 0.(N+15).p is built for torch 2.N.p (0.29.1 for 2.14.1)
PROBE_TIMEOUT_S = 300  # importing torch on a loaded 2-core machine takes seconds, not minutes
# Run in a child: import each module, one JSON line per module (a crash leaves the culprit without its line).
PROBE = """
import importlib, json, sys
for name in sys.argv[1:]:
    try:
        module = importlib.import_module(name)
        if name == "torchvision":
            sys.modules["torch"].ops.torchvision.nms  # the compiled operator a torchvision for another torch lacks
        found = {"version": str(getattr(module, "__version__", ""))}
    except Exception as exc:
        found = {"error": f"{type(exc).__name__}: {' '.join(str(exc).split())}"}
    print(json.dumps({"module": name, **found}), flush=True)
"""


@dataclass(frozen=True)
class Finding:
    """One thing checked: what was found, or what is wrong and the command that fixes it."""

    name: str
    found: str
    problem: str = ""

    @property
    def ok(self) -> bool:
        return not self.problem


def reinstall(*distributions: str) -> str:
    """The command that puts the lock's build of each distribution back (a file of it may be damaged or replaced)."""
    return " ".join([SYNC, *(f"--reinstall-package {name}" for name in distributions)])


def installed(distribution: str) -> str | None:
    """The installed version of a distribution (with its local tag, such as `+cpu`), or None."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def matching_torchvision(torch_version: str) -> str | None:
    """The torchvision release built for this torch (same local tag), or None for a torch outside that rule."""
    parsed = re.fullmatch(r"2\.(\d+)\.(\d+)(\+[\w.]+)?", torch_version)
    if not parsed:
        return None
    minor, patch, tag = parsed.groups()
    return f"0.{int(minor) + TORCHVISION_MINOR_OFFSET}.{patch}{tag or ''}"


def torch_fix(torch_version: str | None, torchvision_version: str | None) -> str:
    """The command that makes torch and torchvision work together: the lock's builds of both; for the CPU-only
    torch of PyTorch's index (`+cpu`, installed by hand: docs/environment.md), the torchvision built for it there."""
    wanted = matching_torchvision(torch_version) if torch_version else None
    if wanted is None or not torch_version.endswith("+cpu"):
        return reinstall("torch", "torchvision")
    again = "--reinstall --no-deps " if torchvision_version == wanted else ""
    return f"uv pip install {again}torch=={torch_version} torchvision=={wanted} --index-url {PYTORCH_INDEX}/cpu"


def probe_imports(names: Sequence[str]) -> dict[str, dict[str, str]]:
    """Each module imported in one child interpreter (this one's path and environment): its version or error."""
    try:
        result = subprocess.run(
            [sys.executable, "-c", PROBE, *names], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        return {name: {"error": f"importing {', '.join(names)} took more than {PROBE_TIMEOUT_S} s"} for name in names}
    found = {}
    for line in result.stdout.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a module printed something while importing
        if isinstance(record, dict) and record.get("module") in names:
            found[record.pop("module")] = record
    if result.returncode != 0:
        crashed = next((name for name in names if name not in found), names[-1])
        found[crashed] = {"error": f"the interpreter died while importing it (exit code {result.returncode})"}
    return found


def check_modules() -> list[Finding]:
    """torch, torchvision (with its compiled operators), PyAV and open_clip, imported as the stages import them."""
    versions = {name: installed(dist) or "(not installed)" for name, dist in MODULES.items()}
    probed = probe_imports(list(MODULES))
    findings: dict[str, Finding] = {}
    for name, dist in MODULES.items():
        error = probed.get(name, {"error": "not imported"}).get("error")
        found = f"{name} {probed[name]['version']}" if error is None else f"{name} {versions[name]}"
        failed = [other for other in NEEDS.get(name, ()) if not findings[other].ok]
        if error is None:
            problem = ""
        elif failed:
            problem = f"{name} needs {' and '.join(failed)} (above)"
        elif name in ("torch", "torchvision"):
            what = f"torch {versions['torch']} does not import"
            if name == "torchvision":
                what = f"torchvision {versions['torchvision']} does not work with torch {versions['torch']}"
            fix = torch_fix(installed("torch"), installed("torchvision"))
            problem = f"{what} ({error}); fix: {fix}"
        else:
            problem = f"{name} {versions[name]} does not import ({error}); fix: {reinstall(dist)}"
        findings[name] = Finding(name, found, problem)
    return list(findings.values())


def check_ffmpeg() -> Finding:
    """The ffmpeg binary the sample and the frames use: the system one, else imageio-ffmpeg's; it must run."""
    fix = f"fix: {reinstall('imageio-ffmpeg')}, or install ffmpeg (apt-get install ffmpeg)"
    try:
        binary = ffmpeg_binary()
        result = subprocess.run([binary, "-version"], capture_output=True, text=True, timeout=60)
    except (ImportError, RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        return Finding("ffmpeg", "ffmpeg", f"no working ffmpeg binary ({type(exc).__name__}: {exc}); {fix}")
    if result.returncode != 0:
        return Finding("ffmpeg", binary, f"{binary} -version exited with {result.returncode}; {fix}")
    version = (result.stdout.splitlines() or [""])[0].removeprefix("ffmpeg version ").split(" ")[0]
    return Finding("ffmpeg", f"ffmpeg {version} ({binary})")


def environment_findings() -> list[Finding]:
    return [*check_modules(), check_ffmpeg()]


def check_environment() -> str:
    """What was checked, in a few words; raises with the first problem (its line names the fix)."""
    findings = environment_findings()
    problems = [f.problem for f in findings if not f.ok]
    if problems:
        raise PipelineError(f"environment: {problems[0]}")
    return ", ".join(f.name for f in findings) + " work"


def main(argv: Sequence[str] | None = None) -> int:
    parser = command_parser("python -m clipvideo doctor", __doc__, root=False)
    parser.parse_args(argv)
    findings = environment_findings()
    for finding in findings:
        print(f"ok    {finding.found}" if finding.ok else f"FAIL  {finding.problem}")
    return 0 if all(f.ok for f in findings) else 1
