# Sourced by scripts/run and scripts/test: make .venv hold onnxconv with the wanted extras.
# Usage: ensure_env EXTRAS   (EXTRAS like "cpu" or "cpu,test" or "gpu,test")
# Re-installs only when pyproject.toml, constraints.txt or the extras changed.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"

ensure_env() {
    local extras="$1"
    local stamp_file="$VENV/.onnxconv-installed"
    local hash have extra missing=""
    # "root-pth": the install also puts the checkout on sys.path (below); bumping it updates
    # an existing .venv
    hash="$({ cat "$ROOT/pyproject.toml" "$ROOT/constraints.txt"; echo root-pth; } \
        | sha256sum | cut -c1-16)"
    have="$(cat "$stamp_file" 2>/dev/null || true)"   # "<hash> <extra,extra,...>"
    for extra in ${extras//,/ }; do
        case ",${have#* }," in *",$extra,"*) ;; *) missing="$missing $extra" ;; esac
    done
    if [ -x "$VENV/bin/python" ] && [ "${have%% *}" = "$hash" ] && [ -z "$missing" ]; then
        return 0   # installed for these pins, with every wanted extra (and maybe more)
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        echo "setting up $VENV ($extras) ..." >&2
        "$PY" -m venv "$VENV" || { echo "error: could not create $VENV with $PY" >&2; return 2; }
        "$VENV/bin/python" -m pip install -q --upgrade pip >&2 || return 2
    else
        echo "updating $VENV ($extras) ..." >&2
    fi
    # onnxruntime and onnxruntime-gpu both provide the module `onnxruntime`: keep only one.
    case ",$extras," in
        *,gpu,*) "$VENV/bin/python" -m pip uninstall -q -y onnxruntime >/dev/null 2>&1 ;;
        *) "$VENV/bin/python" -m pip uninstall -q -y onnxruntime-gpu >/dev/null 2>&1 ;;
    esac
    # pip's own output goes to a log, shown only when the install fails.
    local log="$VENV/install.log"
    "$VENV/bin/python" -m pip install -c "$ROOT/constraints.txt" -e "$ROOT[$extras]" >"$log" 2>&1 \
        || { tail -n 20 "$log" >&2; echo "error: pip could not install onnxconv[$extras] into $VENV (log: $log)" >&2; return 2; }
    # setuptools' editable install of a flat layout finds onnxconv through an import hook that
    # runs after the path search: a script run beside a clone named onnxconv/ (no __init__.py
    # at its top) then imports that folder as an empty namespace package. The checkout on
    # sys.path lets the path search find the real package first.
    local site
    site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
        && echo "$ROOT" > "$site/onnxconv-checkout.pth" || return 2
    echo "$hash $extras" > "$stamp_file"
}
