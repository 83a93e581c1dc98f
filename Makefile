# moge — build. Sources by wildcard per module folder; objects and binaries under build/.
# Targets: all (libmoge.a + moge), test, bench, demo, deps, asan, clean.

CC      ?= cc
PKGS    := libpcre2-8 libcjson libcurl libutf8proc libcrypto libedit
# Debian packages that provide $(PKGS) and the build tools; `make deps` installs the missing ones.
DEB_PKGS := build-essential pkg-config libpcre2-dev libcjson-dev \
            libcurl4-openssl-dev libssl-dev libutf8proc-dev libedit-dev

BUILD   ?= build
OPT     ?= -O2 -march=native
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror $(OPT) -g -MMD -MP -Iinclude -I. \
           $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS  += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread -lm

LIB_SRC  := $(wildcard runtime/*.c tokenizer/*.c sampling/*.c draft/*.c verify/*.c)
CLI_SRC  := $(wildcard examples/moge.c examples/cmd_*.c)
TEST_SRC := $(wildcard tests/test_*.c)
BENCH_SRC:= $(wildcard tests/bench_*.c)

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCH_BIN:= $(BENCH_SRC:tests/%.c=$(BUILD)/tests/%)
EXAMPLES := $(patsubst examples/%.c,$(BUILD)/examples/%,$(filter-out examples/moge%.c examples/cmd_%.c,$(wildcard examples/*.c)))

.PHONY: all test bench demo deps asan clean
all: $(BUILD)/libmoge.a $(BUILD)/moge $(EXAMPLES)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC    $<"
	@$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libmoge.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	@echo "  AR    $@"
	@rm -f $@ && ar rcs $@ $^

$(BUILD)/moge: $(CLI_OBJ) $(BUILD)/libmoge.a
	@echo "  LINK  $@"
	@$(CC) $(CFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libmoge.a $(LDLIBS)

$(BUILD)/examples/%: $(BUILD)/examples/%.o $(BUILD)/libmoge.a
	@echo "  LINK  $@"
	@$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libmoge.a $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(BUILD)/libmoge.a
	@echo "  LINK  $@"
	@$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libmoge.a $(LDLIBS)

# The test runner runs every tests/test_* program from the repository root and ends with
# "N passed, N failed" (counting the PASS/FAIL lines the programs print).
test: deps
	$(MAKE) --no-print-directory all $(TEST_BIN)
	@BUILD=$(BUILD) sh tests/run.sh $(TEST_BIN)

bench: deps
	$(MAKE) --no-print-directory all $(BENCH_BIN)
	@for b in $(BENCH_BIN); do $$b || exit 1; done

# The demo pair (trained MoGE target + distilled draft, tools/train/) with tree speculation and a
# plain-decoding comparison in the same run; stories260K alone until the pair is committed.
DEMO_PROMPT ?= Once upon a time, there was a little robot who
demo: deps
	$(MAKE) --no-print-directory all
	@if [ -f models/tinystories-moge/config.json ] && [ -f models/tinystories-draft/config.json ]; then \
	  echo "$(BUILD)/moge run -m models/tinystories-moge -d models/tinystories-draft --spec tree --temp 0 -n 200 --compare -p \"$(DEMO_PROMPT)\""; \
	  $(BUILD)/moge run -m models/tinystories-moge -d models/tinystories-draft --spec tree --temp 0 -n 200 --compare -p "$(DEMO_PROMPT)"; \
	else \
	  echo "$(BUILD)/moge run -m models/stories260K -n 200 --temp 0"; \
	  $(BUILD)/moge run -m models/stories260K -n 200 --temp 0; \
	fi

# AddressSanitizer + UBSan build of everything, then the full test suite under it (the sampling
# distribution test runs 300 seeds instead of 2000 there).
asan:
	MOGE_TEST_SEEDS=300 $(MAKE) --no-print-directory BUILD=build-asan OPT="-O1 -march=native -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" test

# Installs the Debian packages that are missing (apt-get, through sudo when not root).
deps:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null || \
	  { echo "make deps: apt-get install$$missing failed" >&2; exit 1; }; \
	fi

clean:
	rm -rf build build-asan

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_BIN:=.d) $(BENCH_BIN:=.d) $(EXAMPLES:=.d)
.SECONDARY:
