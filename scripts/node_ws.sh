# Node `ws`, the JavaScript peer of the benchmarks: installs `ws` from npm into $CACHE (once) and
# sets NODE_JS to its echo server (bench/node_echo.js), WS_MODULE, NODE_VERSION and WS_VERSION; NODE_JS stays
# empty when node/npm are missing or NODE=0. Sourced by scripts/bench.sh and
# scripts/idle_memory.sh.
NODE_JS=""
WS_VERSION=""
if [ "${NODE:-1}" = 1 ] && command -v node >/dev/null && command -v npm >/dev/null; then
  if [ ! -f "$CACHE/node_modules/ws/package.json" ]; then
    echo "installing ws from npm into $CACHE..." >&2
    mkdir -p "$CACHE"
    timeout 300 npm install --silent --no-audit --no-fund --prefix "$CACHE" ws@8 >&2
  fi
  NODE_JS="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/bench/node_echo.js"
  WS_MODULE=$(realpath "$CACHE/node_modules/ws")
  export WS_MODULE
  NODE_VERSION=$(node --version)
  WS_VERSION=$(node -p "require('$WS_MODULE/package.json').version")
fi
