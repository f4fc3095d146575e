#!/bin/sh
# The project's only set-up, then a run; needs nothing but Python 3.10+ and git (docs/environment.md).
#
#   ./dev.sh repro [ARGS]   set up, then `dvc repro ARGS` (no ARGS: the whole DAG on the offline sample)
#   ./dev.sh test [ARGS]    set up, then `python -m pytest ARGS` (no ARGS: -q, the whole suite)
#   ./dev.sh setup          set up only; then `. .venv/bin/activate` to run dvc and python by hand
#
# Set up: .venv (python3 -m venv) if missing, the pinned uv in it, then `uv sync --locked --extra dev`: every
# package at the version and hash uv.lock names, this project editable, nothing else; it fails when uv.lock
# and pyproject.toml disagree. A second run only checks. PYTHON=python3.12 picks the Python of a new .venv.
# UV_COMPILE_BYTECODE=1 (uv's --compile-bytecode): every .pyc written at install, so no import compiles torch's
# sources again where Python may not write them (PYTHONDONTWRITEBYTECODE, a read-only .venv): each stage and test
# process starts seconds sooner.
# TORCH=cpu: torch and torchvision from PyTorch's CPU index instead of the lock's PyPI (CUDA) builds, 4 GB less;
# not the locked default (docs/environment.md#cpu-only-torch). .venv remembers it; TORCH=locked goes back.
set -eu
cd "$(dirname "$0")"
UV_VERSION=0.13.9  # the uv that wrote uv.lock (docs/decisions/lock.md)
VENV="$PWD/.venv"
CPU_INDEX=https://download.pytorch.org/whl/cpu
export UV_PROJECT_ENVIRONMENT="$VENV" UV_COMPILE_BYTECODE=1

setup() {
    [ -x "$VENV/bin/python" ] || "${PYTHON:-python3}" -m venv "$VENV"
    case "$("$VENV/bin/uv" --version 2>/dev/null)" in
        "uv $UV_VERSION" | "uv $UV_VERSION "*) ;;
        *) "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION" ;;
    esac
    [ -n "${TORCH:-}" ] || { [ -f "$VENV/torch-cpu" ] && TORCH=cpu; } || TORCH=locked
    case "$TORCH" in
        locked) rm -f "$VENV/torch-cpu"; "$VENV/bin/uv" sync --locked --extra dev --quiet ;;
        cpu) setup_cpu_torch ;;
        *) echo "dev.sh: TORCH=$TORCH: locked or cpu" >&2; exit 2 ;;
    esac
}

setup_cpu_torch() {
    # The lock minus torch, torchvision and the CUDA-only packages (kept as installed: --inexact), then the
    # CPU builds of the locked torch and of the torchvision made for it (0.(N+15).p for torch 2.N.p).
    locked=$("$VENV/bin/uv" export --quiet --locked --extra dev --no-emit-project --no-hashes --no-header --no-annotate)
    skip=$(printf '%s\n' "$locked" | sed -n -E 's/^(torch|torchvision|triton|nvidia-[^=]+|cuda-[^=]+)==.*/\1/p' | sort -u)
    # shellcheck disable=SC2046 # one --no-install-package per name
    "$VENV/bin/uv" sync --locked --extra dev --inexact --quiet $(printf -- '--no-install-package %s ' $skip)
    torch=$(printf '%s\n' "$locked" | sed -n -E 's/^torch==([0-9.]+).*/\1/p')
    minor=${torch#*.}
    vision="0.$((${minor%%.*} + 15)).${torch##*.}"
    "$VENV/bin/uv" pip install --python "$VENV/bin/python" --quiet --no-deps --index-url "$CPU_INDEX" \
        "torch==$torch+cpu" "torchvision==$vision+cpu"
    touch "$VENV/torch-cpu"
}

command=${1:-}
[ $# -gt 0 ] && shift
case "$command" in
    setup) setup; exit 0 ;;
    repro | test) setup ;;
    *) echo "usage: ./dev.sh repro [dvc repro args] | test [pytest args] | setup" >&2; exit 2 ;;
esac
# As `. .venv/bin/activate` would: the stages DVC starts (`python -m stages.<name>`) and the CLIs the tests
# start (dvc, ray) are this environment's.
export VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH"
unset PYTHONHOME
if [ "$command" = repro ]; then
    exec dvc repro "$@"
fi
[ $# -gt 0 ] || set -- -q
exec python -m pytest "$@"
