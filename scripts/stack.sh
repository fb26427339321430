# Sourced by scripts/bootstrap and scripts/test: which Python and which virtualenv a stack uses.
#
#   STACK=django5 (default)  Python 3.11, Django 5.2 LTS   -> .venv
#   STACK=django6            Python 3.12, Django 6.0       -> .venv-django6
#   STACK=py313              Python 3.13, Django 6.0       -> .venv-py313
#
# The Django version follows the Python version through scripts/constraints.txt.
# PYTHON=/path/to/python overrides the interpreter a stack is created with.

STACK=${STACK:-django5}
case "$STACK" in
    django5) want=3.11; VENV=.venv ;;
    django6) want=3.12; VENV=.venv-django6 ;;
    py313) want=3.13; VENV=.venv-py313 ;;
    *) echo "unknown STACK=$STACK (expected django5, django6 or py313)" >&2; exit 2 ;;
esac

# The interpreter a new virtualenv is made from: $PYTHON, else pythonX.Y on PATH, else the
# newest pyenv-installed X.Y (pyenv's shim for a version that is not "global" fails to run).
find_python() {
    if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; return 0; fi
    local candidate
    if candidate=$(command -v "python$want") && "$candidate" -c '' 2>/dev/null; then
        echo "$candidate"; return 0
    fi
    if command -v pyenv >/dev/null 2>&1; then
        candidate=$(ls -d "$(pyenv root)/versions/$want".*/bin/"python$want" 2>/dev/null \
            | sort -V | tail -n 1)
        [ -n "$candidate" ] && { echo "$candidate"; return 0; }
    fi
    echo "no Python $want found for STACK=$STACK: install it (e.g. pyenv install $want)" \
        "or set PYTHON=/path/to/python$want" >&2
    return 1
}
VENV_PYTHON=$VENV/bin/python
