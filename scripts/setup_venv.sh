#!/usr/bin/env bash
# Create .venv in the repo (if missing) and install the pinned requirements into it.
# torch is installed first and pinned by constraints.txt, so nothing can replace the CPU build
# with a CUDA one. With --dev, the test requirements and the optional cluster extra (Ray) are installed
# too, so that the tests exercise --engine ray. Re-running is cheap:
# a stamp records what was installed and nothing is done while the requirement files are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
files=(requirements.txt constraints.txt)
[[ "${1:-}" == "--dev" ]] && files+=(requirements-dev.txt requirements-cluster.txt)
stamp=".venv/.installed-$(cat "${files[@]}" "$0" | sha256sum | cut -c1-16)"  # this script's own steps count too
[[ -f "$stamp" ]] && exit 0
[[ -x .venv/bin/python ]] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip install --disable-pip-version-check -q)
"${pip[@]}" "torch==2.13.0"
args=(-c constraints.txt -r requirements.txt)
[[ "${1:-}" == "--dev" ]] && args+=(-r requirements-dev.txt -r requirements-cluster.txt)
"${pip[@]}" "${args[@]}"
# PySceneDetect, for bench.video_speed's comparison only: without its dependencies, since it asks for
# opencv-python, a second cv2 beside the opencv-python-headless that rapidocr brings (same import name).
[[ "${1:-}" == "--dev" ]] && "${pip[@]}" --no-deps "scenedetect==0.7.2" "platformdirs>=4"
# clip-retrieval, whose ClipClient and clip-front the protocol tests drive: its client module needs only
# requests, while its dependencies (the whole back: torch builds, open_clip, faiss...) would replace ours.
[[ "${1:-}" == "--dev" ]] && "${pip[@]}" --no-deps "clip-retrieval==2.45.0"
# The packaged PostgreSQL's pgvector, rebuilt to run on CPUs without AVX-512 (see that script).
[[ "${1:-}" == "--dev" ]] && scripts/setup_pgvector.sh
.venv/bin/python -c "import torch; assert not torch.version.cuda, 'a CUDA build of torch was installed'"
touch "$stamp"
