"""The house rules a reviewer checks: one home per fact, thin stages, light stages, and where tests reach."""

from __future__ import annotations

import ast
import importlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dvc.repo import Repo

from clipvideo.config.declared import ALL
from clipvideo.core.paths import ProjectPaths
from clipvideo.embed.embedder import EMBED_CODE
from clipvideo.video.frames import FRAMES_CODE
from tests.conftest import REPO, VARIANTS, write_params

STAGE_MODULES = sorted(p.stem for p in (REPO / "stages").glob("*.py") if p.stem != "__init__")
HEAVY = ("open_clip", "torchvision", "av", "ray")
LIGHT_STAGES = ("split", "check_leakage", "train", "evaluate", "report")


@pytest.fixture(scope="module")
def dvc_stages() -> dict:
    """What real DVC resolves from dvc.yaml: stage name -> (declared params, code and data deps)."""
    with Repo(str(REPO)) as repo:
        return {
            stage.addressing: (
                {key for dep in stage.params for key in (dep.params or [ALL])},
                [dep.def_path for dep in stage.deps if dep not in stage.params],
            )
            for stage in repo.index.stages
        }


def stage_module(stage: str) -> str:
    """The module a DVC stage runs: every train stage (train, train_mixup, train_logreg, ...) runs stages/train.py."""
    name = stage.partition("@")[0]
    return "train" if name.startswith("train") else name


def declared_by_code(stage: str) -> set[str]:
    """The params a stage module declares to its runner (train: its variant's, from variants.yaml; report: evaluate
    and the study's protocol keys)."""
    name, variant = stage_module(stage), stage.partition("@")[2]
    if name == "train":
        return set(VARIANTS[variant].params)
    if name == "report":
        return set(importlib.import_module("stages.report").declares(None, ProjectPaths(REPO)).keys)
    return set(importlib.import_module(f"stages.{name}").DECLARES)


def test_every_stage_declares_to_dvc_exactly_the_params_its_code_reads(dvc_stages: dict) -> None:
    assert {stage_module(stage) for stage in dvc_stages} == set(STAGE_MODULES) - {"predict"}
    for stage, (params, _) in dvc_stages.items():
        assert params == declared_by_code(stage), f"{stage}: dvc.yaml and stages/{stage_module(stage)}.py differ"


def test_every_stage_sits_behind_the_check_params_gate() -> None:
    """Each stage depends on check_params' output directly or through its inputs, so `dvc repro <any stage>` runs
    the checks first (DVC's graph: an edge runs from a stage to the stages whose outputs it reads)."""
    import networkx

    with Repo(str(REPO)) as repo:
        graph = repo.index.graph
        gate = next(stage for stage in graph if stage.addressing == "check_params")
        assert [out.def_path for out in gate.outs] == [ProjectPaths().checked.as_posix()]
        for stage in graph:
            if stage is not gate:
                assert gate in networkx.descendants(graph, stage), f"{stage.addressing} does not wait for the gate"


def test_the_gate_writes_its_verdict_alone(tmp_path: Path) -> None:
    """check_params' output is the same bytes whatever params it passed, so a params change reruns nothing
    downstream for the gate's sake."""
    from stages import check_params

    outputs = []
    for seed in (1, 2):
        write_params(tmp_path, {"train.seed": seed, "frames_count": 3 + seed})
        assert check_params.main(["--root", str(tmp_path)]) == 0
        outputs.append(ProjectPaths(tmp_path).checked.read_bytes())
    assert outputs[0] == outputs[1] and outputs[0].startswith(b"passed: ")


def imported_modules(path: Path) -> set[str]:
    """The modules of clipvideo and stages one file imports, anywhere in it (lazy imports inside functions too):
    `from a.b import c` imports a.b.c when that is a module, else a.b; `import a.b` imports a.b."""
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = (package + ("." + node.module if node.module else "")) if node.level else node.module
            submodules = {f"{base}.{alias.name}" for alias in node.names if module_file(f"{base}.{alias.name}")}
            found |= submodules or {base}
    return {name for name in found if name.split(".")[0] in ("clipvideo", "stages") and module_file(name)}


def module_file(module: str) -> Path | None:
    path = REPO.joinpath(*module.split("."))
    return next((p for p in (path.with_suffix(".py"), path / "__init__.py") if p.is_file()), None)


def code_closure(stage_module: str) -> set[str]:
    """stages/<name>.py and the files of every module it imports, transitively, from the source itself."""
    seen: set[Path] = set()
    todo = [REPO / "stages" / f"{stage_module}.py"]
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo += [module_file(module) for module in imported_modules(path)]
    return {path.relative_to(REPO).as_posix() for path in seen}


def test_each_stage_depends_on_exactly_the_code_it_imports(dvc_stages: dict) -> None:
    """The import graph, read here from the source with ast (tools/generate.py reads it with grimp), against
    dvc.yaml: a stage's code deps are its own module and every library module it imports, transitively, so an edit
    reruns exactly the stages that run the edited code; no code folder stands in for its files."""
    for stage, (_, deps) in dvc_stages.items():
        code = {dep for dep in deps if dep.startswith(("clipvideo", "stages"))}
        assert code == code_closure(stage_module(stage)), f"{stage}: stale code deps: run `python -m tools.generate`"
    report = [s for s, (_, deps) in dvc_stages.items() if "clipvideo/evaluation/report.py" in deps]
    training = {s for s, (_, deps) in dvc_stages.items() if "clipvideo/modeling/training.py" in deps}
    assert report == ["report"] and training.isdisjoint({"manifest", "download", "split", "frames", "embed"})


def test_frames_and_embed_depend_on_the_code_that_keys_their_resume_folders(dvc_stages: dict) -> None:
    """The two long stages' per-video cache keys hash every module of their own packages the stage runs (a dep):
    an edit there moves the keys as well as rerunning the stage, while an edit elsewhere (the runner, the config)
    reruns the stage, which serves its cached videos again."""
    for stage, code in (("frames", FRAMES_CODE), ("embed", EMBED_CODE)):
        hashed = {p for source in code for p in (sorted(source.rglob("*.py")) if source.is_dir() else [source])}
        hashed_names = {p.relative_to(REPO).as_posix() for p in hashed}
        folders = tuple(p.relative_to(REPO).as_posix() for p in code)
        runs = {dep for dep in dvc_stages[stage][1] if dep.startswith(folders)}
        assert runs and runs <= hashed_names, f"{stage}: {sorted(runs - hashed_names)}"


def test_stage_modules_are_thin_and_reach_the_library_after_parsing() -> None:
    """A stage fits on a screen, and its top-level imports are the runner only: `--help` loads no library."""
    for name in STAGE_MODULES:
        source = (REPO / "stages" / f"{name}.py").read_text()
        assert len(source.splitlines()) <= 50, f"stages/{name}.py has {len(source.splitlines())} lines"
        top = [node for node in ast.parse(source).body if isinstance(node, ast.ImportFrom)]
        assert {node.module for node in top} <= {
            "__future__",
            "collections.abc",
            "clipvideo.cli.stage",
            "clipvideo.core.paths",
            "clipvideo.config.declared",
            "clipvideo.core.system",
        }


def test_help_answers_without_importing_torch() -> None:
    code = (
        "import sys, importlib\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        importlib.import_module(f'stages.{name}').main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted(m for m in ('torch', 'sklearn', 'numpy') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code, *STAGE_MODULES], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_light_stages_never_load_open_clip_torchvision_pyav_or_ray(embedded: ProjectPaths, tmp_path: Path) -> None:
    """split, every train and evaluate, and report, run for real in one fresh interpreter: what they loaded."""
    root = tmp_path / "project"
    shutil.copytree(embedded.root, root)
    calls = [("split", []), ("check_leakage", [])] + [(s, [v]) for s in ("train", "evaluate") for v in VARIANTS]
    calls += [("report", [])]
    code = (
        "import importlib, sys\n"
        f"for name, extra in {calls!r}:\n"
        f"    assert importlib.import_module('stages.' + name).main(['--root', {str(root)!r}, *extra]) == 0\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"
    assert set(LIGHT_STAGES) == {name for name, _ in calls}


def test_every_csv_column_tuple_lives_in_the_contracts_module() -> None:
    for path in (REPO / "clipvideo").rglob("*.py"):
        if path.name == "contracts.py":
            continue
        found = re.findall(r"^\s*(\w+_COLUMNS)\s*=", path.read_text(), re.MULTILINE)
        assert not found, f"{path.relative_to(REPO)} defines {found}: columns belong in clipvideo/core/contracts.py"


def test_tests_reach_a_stage_only_through_its_main_and_bench_never() -> None:
    """Stage internals are not an API: tests call `main` (or the command line); bench never imports stages."""
    for path in (REPO / "bench").glob("*.py"):
        assert "stages" not in {
            n.module.split(".")[0]
            for n in ast.walk(ast.parse(path.read_text()))
            if isinstance(n, ast.ImportFrom) and n.module
        }, path
    for path in (REPO / "tests").glob("*.py"):
        tree = ast.parse(path.read_text())
        stage_names = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("stages"):
                assert node.module == "stages", f"{path.name}: from {node.module} import ..."
                stage_names |= {alias.asname or alias.name for alias in node.names}
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in stage_names:
                assert node.attr in ("main", "__doc__"), f"{path.name}: {node.value.id}.{node.attr}"


def relative_links(page: Path) -> set[Path]:
    """The files a markdown page links to by relative path; each must exist."""
    found = set()
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        resolved = (page.parent / target).resolve()
        assert resolved.exists(), f"{page.relative_to(REPO)} links to {target}, which does not exist"
        found.add(resolved)
    return found


def test_every_docs_page_is_linked_from_the_readme_and_every_relative_link_resolves() -> None:
    readme, decisions = REPO / "README.md", REPO / "docs" / "decisions" / "README.md"
    assert len(readme.read_text().splitlines()) <= 250
    pages = sorted((REPO / "docs").rglob("*.md"))
    links = {page: relative_links(page) for page in [readme, *pages]}
    assert decisions in pages and decisions.resolve() in links[readme]
    for page in pages:
        index = decisions if page.parent == decisions.parent and page != decisions else readme
        assert page.resolve() in links[index], f"{page.relative_to(REPO)} is not linked from {index.relative_to(REPO)}"


def test_the_project_paths_are_defined_once() -> None:
    """Every stage output path comes from ProjectPaths: no literal data/ path in the library but in paths.py."""
    for path in (REPO / "clipvideo").rglob("*.py"):
        if path.name == "paths.py":
            continue
        text = path.read_text()
        literal = re.findall(r"[\"'](data/[\w/.-]*)[\"']", text)
        allowed = {"data/split.csv", "data/text"}  # variants.yaml's slots in dvc.yaml (config/variants.py)
        assert set(literal) <= allowed, f"{path.relative_to(REPO)}: {literal}"
    assert ProjectPaths(Path("x")).frames_dir == Path("x/data/frames")


def test_the_contracts_page_lists_every_table_as_the_contracts_module_defines_it() -> None:
    from clipvideo.core import contracts

    page = (REPO / "docs" / "contracts.md").read_text()
    tables = {name: value for name, value in vars(contracts).items() if name.endswith("_COLUMNS")}
    for name, columns in tables.items():
        if name != "SOURCE_COLUMNS":
            assert f"`{','.join(columns)}`" in page, f"docs/contracts.md does not list {name}: {','.join(columns)}"
    for status in contracts.Status:
        assert f"`{status}`" in page
