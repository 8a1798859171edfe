# tcpstate: `make run` traces, `make test` proves it. Both install what is missing first.

CARGO      ?= cargo
PREFIX     ?= /usr/local
BIN        := target/release/tcpstate
SUDO       := $(if $(filter 0,$(shell id -u)),,sudo)

# Debian packages: build (clang, libelf, zlib, pkg-config), vmlinux.h and
# leftover checks (bpftool), real peers for the tests (nginx, curl, iproute2),
# stock kernels under QEMU (qemu, busybox, cpio, xz, util-linux's flock, and
# gcc with a static libc for the guest's socket helper), a font for PNG
# pictures, bpftrace (a peer in make bench), prometheus (its server and
# promtool check what --metrics serves and the rules in deploy/prometheus/),
# clickhouse (its server loads the JSON into deploy/clickhouse/'s schema),
# and what checks the rest of deploy/ (tests/deploy.rs): systemd's
# systemd-analyze, systemd-sysusers and systemd-tmpfiles, logrotate, and
# strace for the unit's system call filter.
DEB_PKGS   := clang llvm libelf-dev zlib1g-dev pkg-config make bpftool \
              nginx-light curl iproute2 procps ca-certificates \
              qemu-system-x86 busybox-static cpio xz-utils util-linux gcc libc6-dev \
              fonts-dejavu-core bpftrace prometheus clickhouse-server clickhouse-client \
              systemd logrotate strace

.PHONY: all deps build run test lint test-kernels demo bench soak fleet install uninstall vmlinux clean

all: build

# Installs only the packages that are missing; apt-get runs only if needed.
deps:
	@missing=$$(for p in $(DEB_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust from https://rustup.rs (1.85 or newer)"; exit 1; }
	@$(CARGO) fmt --version >/dev/null 2>&1 && $(CARGO) clippy --version >/dev/null 2>&1 || \
		{ echo "rustfmt or clippy missing: rustup component add rustfmt clippy"; exit 1; }

build: deps
	$(CARGO) build --release --locked

# Every TCP socket on the machine as a table, until Ctrl-C.
run: build
	$(SUDO) $(BIN) -o table

# Every test: the house style, unit tests and the kernel tests against real
# nginx and curl, then the tracer built alone (no plot, no metrics).
# Not root: cargo builds as you, and only the test binaries run under sudo.
test: deps lint
	$(if $(SUDO),CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="sudo -E") $(CARGO) test --locked --workspace --all-targets
	$(if $(SUDO),CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="sudo -E") $(CARGO) test --locked --no-default-features \
		--lib --bins --test trace --test errors --test hardening --test connections

# The house style: rustfmt.toml, and clippy with warnings as errors.
lint: deps
	$(CARGO) fmt --all --check
	$(CARGO) clippy --locked --workspace --all-targets --all-features -- -D warnings

# Only the QEMU part: fentry/fexit and kprobe TIME_WAIT probes on stock
# Debian 5.10, 6.1 and 6.12 kernels (fetched from Debian's archive, cached in .kernels/).
test-kernels: deps
	$(if $(SUDO),CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="sudo -E") $(CARGO) test --locked --test kernels --test kernels_parked

# Connection storm: tcpstate against no tracer, a count-only floor (alone and
# with empty programs at tcpstate's other attachment points) and bpftrace,
# side by side over alternating rounds. Tables on stdout, bench/results.json.
# N, ROUNDS, MODE (client-close|reset|concurrent), ROWS.
N      ?= 20000
ROUNDS ?= 5
MODE   ?= client-close
ROWS   ?= all
# The storm's CPU (last, none or a number): see bench/src/loadgen/mod.rs.
STORM_CPU ?= last
bench: deps
	$(CARGO) build --release --locked --workspace
	$(SUDO) target/release/bench -n $(N) -r $(ROUNDS) --mode $(MODE) --rows $(ROWS) --storm-cpu $(STORM_CPU) -o bench/results.json

# About 10 million transitions through one tcpstate: exact count, nothing
# lost, RSS flat after warm-up. Not part of make test (it takes minutes).
SOAK_ROUNDS ?= 20
SOAK_N      ?= 50000
soak: deps
	$(CARGO) build --release --locked --workspace
	$(SUDO) scripts/soak.sh target/release/tcpstate target/release/loadgen $(SOAK_ROUNDS) $(SOAK_N)

# One host of a fleet, end to end: tcpstate into a spool of handed-over
# files, loaded into ClickHouse, scraped by Prometheus, under FLEET_N
# connections; checks both hold every transition and prints the cost.
FLEET_N      ?= 20000
FLEET_ROTATE ?= 5
fleet: deps
	$(CARGO) build --release --locked --workspace
	$(SUDO) scripts/fleet.sh target/release/tcpstate target/release/loadgen $(FLEET_N) $(FLEET_ROTATE)

# One curl -> nginx request, traced and drawn as timeline.svg (TIME_WAIT ended early).
demo: build
	$(SUDO) scripts/demo.sh $(BIN) timeline.svg

# The binary, shell completions and man page, under PREFIX (DESTDIR for packaging).
install: build
	install -Dm755 $(BIN) $(DESTDIR)$(PREFIX)/bin/tcpstate
	install -d $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/bash-completion/completions \
		$(DESTDIR)$(PREFIX)/share/zsh/site-functions $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d
	$(BIN) man > $(DESTDIR)$(PREFIX)/share/man/man1/tcpstate.1
	$(BIN) completions bash > $(DESTDIR)$(PREFIX)/share/bash-completion/completions/tcpstate
	$(BIN) completions zsh > $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_tcpstate
	$(BIN) completions fish > $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/tcpstate.fish

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/tcpstate $(DESTDIR)$(PREFIX)/share/man/man1/tcpstate.1 \
		$(DESTDIR)$(PREFIX)/share/bash-completion/completions/tcpstate \
		$(DESTDIR)$(PREFIX)/share/zsh/site-functions/_tcpstate \
		$(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/tcpstate.fish

# Regenerates the BPF program's kernel types from the running kernel.
vmlinux:
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > src/bpf/vmlinux.h

clean:
	$(CARGO) clean
