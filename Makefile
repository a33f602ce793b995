# Two commands set everything up on a fresh Debian machine:
#   make run    build in release mode and start the `tollgate demo` tour
#   make test   formatting, lints and the whole test suite
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: run test build check fmt bench micro soak fuzz screenshots

run:
	@.ci/deps.sh build
	$(CARGO) build --release
	./target/release/tollgate demo

build:
	@.ci/deps.sh build
	$(CARGO) build --release

test:
	@.ci/deps.sh test
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) test -- --skip three_replicas_on_one_postgres
	@# The replica test prints the propagation latencies and limit totals it measured.
	$(CARGO) test --test replicas -- --nocapture

check:
	$(CARGO) run --quiet -- check --config config/tollgate.yaml

# The console's screenshots in docs/console/, taken by its browser test.
screenshots:
	@.ci/deps.sh test
	TOLLGATE_SCREENSHOTS=docs $(CARGO) test --test console -- the_console_runs_the_whole_key_lifecycle_in_a_browser

fmt:
	$(CARGO) fmt --all

# The load benchmark against nginx (installs nginx and wrk if missing), then the
# micro-benchmarks. Not part of `make test`.
bench:
	@.ci/deps.sh bench
	$(CARGO) build --release --bin tollgate --example seed_keys --example bare_pingora
	export BENCH_OUT=$${BENCH_OUT:-benches/results/$$(date +%F).md} && python3 benches/load/load.py \
	  && python3 benches/load/rss.py "$$BENCH_OUT" && python3 benches/load/tls.py "$$BENCH_OUT"
	$(CARGO) bench --bench decision

micro:
	$(CARGO) bench --bench decision

# Bounded load with key churn for SOAK_MINUTES (default 10); fails on errors or growth.
soak:
	@.ci/deps.sh bench
	$(CARGO) build --release --bin tollgate --example seed_keys
	python3 benches/soak.py

# Each fuzz target for FUZZ_SECONDS (default 60). New inputs go to fuzz/work (kept out of
# git); crashes land in fuzz/artifacts: minimise them and add them to fuzz/corpus, which
# `make test` replays (tests/fuzz_corpus.rs).
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= key_parser auth_headers jwt cidr_xff config admin_json
fuzz:
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	cd fuzz && for target in $(FUZZ_TARGETS); do \
	  mkdir -p work/$$target && \
	  RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run --sanitizer none $$target work/$$target corpus/$$target -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done
