# moge — build. Sources by wildcard per module folder; objects and binaries under build/.
# Targets: all (libmoge.a, libmoge.so + moge), install, test, bench, demo, standins, deps, asan, clean.

CC      ?= cc
MAKEFLAGS += --no-builtin-rules
# The library's pkg-config packages, and the command's (line editing for `moge chat`).
LIB_PKGS := libpcre2-8 libcjson libcurl libutf8proc libcrypto
PKGS    := $(LIB_PKGS) libedit
# Debian packages that provide $(PKGS) and the build tools; `make deps` installs the missing ones.
DEB_PKGS := build-essential pkg-config libpcre2-dev libcjson-dev \
            libcurl4-openssl-dev libssl-dev libutf8proc-dev libedit-dev libopenmpi-dev openmpi-bin

BUILD   ?= build
OPT     ?= -O2
# One binary for every processor of its architecture: everything is built for the baseline
# (x86-64-v2: SSE4.2 and POPCNT, every x86-64 of the last 15 years), and the cpu backend's
# kernels (runtime/backend_cpu.c) once more per instruction set (CPU_VARIANTS, with the flags
# VFLAGS_<variant>); runtime/cpu_dispatch.c picks the widest this processor runs at load.
MACHINE := $(shell $(CC) -dumpmachine)
ifneq (,$(filter x86_64-% i686-% i386-%,$(MACHINE)))
BASE_ARCH    ?= -march=x86-64-v2 -mtune=generic
CPU_VARIANTS := scalar avx2 avxvnni avx512 avx512vnni
else
BASE_ARCH    ?=
CPU_VARIANTS := generic
endif
VFLAGS_avx2       := -march=x86-64-v3
VFLAGS_avxvnni    := -march=x86-64-v3 -mavxvnni
VFLAGS_avx512     := -march=x86-64-v4
VFLAGS_avx512vnni := -march=x86-64-v4 -mavx512vnni
# Position-independent (the objects make libmoge.so too) with hidden visibility: only what
# include/moge.h marks MOGE_API leaves the library.
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror $(OPT) $(BASE_ARCH) -g -MMD -MP -Iinclude -I. \
           -fPIC -fvisibility=hidden $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LIB_LDLIBS := $(shell pkg-config --libs $(LIB_PKGS) 2>/dev/null) -lpthread -lm
LDLIBS  += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread -lm
# Open MPI (expert parallelism across processes): only runtime/comm_mpi.c includes mpi.h. Its object
# is in libmoge-internal.a (an ordinary archive: only the programs that call moge_comm_mpi_init,
# moge and tests/test_mpi, pull it and link libmpi) and in libmoge-mpi.a (libmoge.a plus MPI, for
# library users who run jobs: link it with `pkg-config --libs ompi-c`); libmoge.a and libmoge.so
# have runtime/comm_nompi.c instead (moge_comm_mpi_init says to link libmoge-mpi.a), so their
# users never need libmpi.
MPI_CFLAGS := $(shell pkg-config --cflags ompi-c 2>/dev/null)
MPI_LIBS   := $(shell pkg-config --libs ompi-c 2>/dev/null)

LIB_SRC  := $(filter-out runtime/backend_cpu.c runtime/comm_mpi.c,$(wildcard runtime/*.c tokenizer/*.c sampling/*.c draft/*.c verify/*.c sim/*.c))
CLI_SRC  := $(wildcard examples/moge.c examples/cmd_*.c)
TEST_SRC := $(wildcard tests/test_*.c)
BENCH_SRC:= $(wildcard tests/bench_*.c)

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o) $(CPU_VARIANTS:%=$(BUILD)/runtime/backend_cpu-%.o)
MPI_OBJ  := $(BUILD)/runtime/comm_mpi.o
# the objects of the libraries with MPI: comm_mpi.o instead of comm_nompi.o (its stub that says so)
MPI_LIB_OBJ := $(filter-out $(BUILD)/runtime/comm_nompi.o,$(LIB_OBJ)) $(MPI_OBJ)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCH_BIN:= $(BENCH_SRC:tests/%.c=$(BUILD)/tests/%)
EXAMPLES := $(patsubst examples/%.c,$(BUILD)/examples/%,$(filter-out examples/moge%.c examples/cmd_%.c,$(wildcard examples/*.c)))

.PHONY: all install test bench bench-peer demo standins deps asan clean
all: $(BUILD)/libmoge.a $(BUILD)/libmoge-mpi.a $(BUILD)/libmoge.so $(BUILD)/moge $(EXAMPLES)

# Objects depend on the compiler and flags they were built with: a change (e.g. BASE_ARCH) rebuilds
# them instead of linking objects made for another instruction set.
FLAGS_STAMP := $(BUILD)/flags.stamp
FLAGS_TEXT  := $(CC) $(CFLAGS) | $(foreach v,$(CPU_VARIANTS),$(v): $(VFLAGS_$(v)))
$(FLAGS_STAMP): FORCE
	@mkdir -p $(BUILD)
	@echo '$(FLAGS_TEXT)' | cmp -s - $@ || echo '$(FLAGS_TEXT)' > $@
.PHONY: FORCE
FORCE:

$(BUILD)/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@echo "  CC    $<"
	@$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/runtime/comm_mpi.o: runtime/comm_mpi.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@echo "  CC    $<"
	@$(CC) $(CFLAGS) $(MPI_CFLAGS) -c $< -o $@

$(BUILD)/runtime/backend_cpu-%.o: runtime/backend_cpu.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@echo "  CC    $< ($*)"
	@$(CC) $(CFLAGS) $(VFLAGS_$*) -DCPU_VARIANT=$* -c $< -o $@

# Three forms of the library. libmoge-internal.a: every object as it is, for the command and the
# tests (which also reach internal functions). libmoge.a: the same objects linked into one
# (ld -r) whose hidden symbols are made local, so a program that links it sees only moge_* names
# and its own set_err or tk_hash cannot clash. libmoge.so: the shared library, exporting the same.
SOVERSION := 0
VERSION   := $(shell sed -n 's/^\#define MOGE_VERSION "\(.*\)"/\1/p' include/moge.h)
$(BUILD)/libmoge-internal.a: $(MPI_LIB_OBJ)
	@mkdir -p $(dir $@)
	@echo "  AR    $@"
	@rm -f $@ && ar rcs $@ $^

$(BUILD)/libmoge.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	@echo "  AR    $@"
	@ld -r -o $(BUILD)/moge-lib.o $^ && objcopy --localize-hidden $(BUILD)/moge-lib.o && \
	  rm -f $@ && ar rcs $@ $(BUILD)/moge-lib.o

$(BUILD)/libmoge-mpi.a: $(MPI_LIB_OBJ)
	@mkdir -p $(dir $@)
	@echo "  AR    $@"
	@ld -r -o $(BUILD)/moge-mpi-lib.o $^ && objcopy --localize-hidden $(BUILD)/moge-mpi-lib.o && \
	  rm -f $@ && ar rcs $@ $(BUILD)/moge-mpi-lib.o

$(BUILD)/libmoge.so: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	@echo "  LINK  $@"
	@$(CC) $(CFLAGS) -shared -Wl,-soname,libmoge.so.$(SOVERSION) -o $@.$(SOVERSION) $^ $(LIB_LDLIBS) && \
	  ln -sf libmoge.so.$(SOVERSION) $@

$(BUILD)/moge: $(CLI_OBJ) $(BUILD)/libmoge-internal.a
	@echo "  LINK  $@"
	@$(CC) $(CFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libmoge-internal.a $(LDLIBS) $(MPI_LIBS)

# The example programs use only include/moge.h: they link the public library.
$(BUILD)/examples/%: $(BUILD)/examples/%.o $(BUILD)/libmoge.a
	@echo "  LINK  $@"
	@$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libmoge.a $(LIB_LDLIBS)

# the one test that is an MPI program itself (it runs its own ranks under mpirun)
$(BUILD)/tests/test_mpi: $(BUILD)/tests/test_mpi.o $(BUILD)/libmoge-internal.a
	@echo "  LINK  $@"
	@$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libmoge-internal.a $(LDLIBS) $(MPI_LIBS)

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(BUILD)/libmoge-internal.a
	@echo "  LINK  $@"
	@$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libmoge-internal.a $(LDLIBS)

# make install [PREFIX=/usr/local] [DESTDIR=]: the header, both libraries, the command and a
# pkg-config file, so `cc app.c $$(pkg-config --cflags --libs moge)` builds a program.
PREFIX  ?= /usr/local
INSTALL_DIR := $(DESTDIR)$(PREFIX)
install: all
	install -d $(INSTALL_DIR)/include $(INSTALL_DIR)/lib/pkgconfig $(INSTALL_DIR)/bin
	install -m 644 include/moge.h $(INSTALL_DIR)/include/moge.h
	install -m 644 $(BUILD)/libmoge.a $(INSTALL_DIR)/lib/libmoge.a
	install -m 755 $(BUILD)/libmoge.so.$(SOVERSION) $(INSTALL_DIR)/lib/libmoge.so.$(SOVERSION)
	ln -sf libmoge.so.$(SOVERSION) $(INSTALL_DIR)/lib/libmoge.so
	install -m 755 $(BUILD)/moge $(INSTALL_DIR)/bin/moge
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' -e 's|@REQUIRES@|$(LIB_PKGS)|' \
	  moge.pc.in > $(INSTALL_DIR)/lib/pkgconfig/moge.pc

# The test runner runs every tests/test_* program from the repository root and ends with
# "N passed, N failed" (counting the PASS/FAIL lines the programs print).
test: deps
	$(MAKE) --no-print-directory all $(TEST_BIN)
	@BUILD=$(BUILD) MOGE_TEST_CC="$(CC)" MOGE_TEST_OPT="$(OPT)" sh tests/run.sh $(TEST_BIN)

bench: deps standins
	$(MAKE) --no-print-directory all $(BENCH_BIN)
	@for b in $(BENCH_BIN); do $$b || exit 1; done

# Memory-bound stand-ins of the committed models (moge pad; runtime/pad.c): the same text as their
# source at the memory cost of a ~1.6 GB f32 model, for speculative decoding where decoding is
# memory-bound. Written on first use (skipped when config.json exists), after checking that the
# file system has room for all that are missing.
STANDINS          := $(BUILD)/standins
STANDIN_MOGE      := $(STANDINS)/tinystories-moge-1.6g
STANDIN_MOGE_PAD  := -m models/tinystories-moge --hidden 1024 --layers 18 --heads 32 --ff-expert 128 --ff-shared 2048
STANDIN_MOGE_MB   := 1560
STANDIN_DENSE     := $(STANDINS)/stories260K-1.7g
STANDIN_DENSE_PAD := -m models/stories260K --hidden 1536 --layers 16 --heads 192 --ff 4096
STANDIN_DENSE_MB  := 1630
# $(call standins_sh,STANDIN_MOGE STANDIN_DENSE): the shell that writes the missing ones (MB: MiB on disk).
define standins_sh
need=0; $(foreach s,$(1),[ -f $($(s))/config.json ] || need=$$((need + $($(s)_MB)));) \
if [ $$need -gt 0 ]; then \
  mkdir -p $(STANDINS) && free=$$(df -Pm $(STANDINS) | awk 'NR == 2 {print $$4}') || exit 1; \
  if [ "$$free" -lt $$need ]; then echo "make: the stand-ins to write need $$need MB; $(STANDINS) has $$free MB free" >&2; exit 1; fi; \
fi; \
$(foreach s,$(1),if [ ! -f $($(s))/config.json ]; then \
  echo "$(BUILD)/moge pad $($(s)_PAD) -o $($(s))"; $(BUILD)/moge pad $($(s)_PAD) -o $($(s)) || exit 1; fi;) true
endef

standins: deps
	$(MAKE) --no-print-directory all
	@$(call standins_sh,STANDIN_MOGE STANDIN_DENSE)

# The demo pair (trained MoGE target + distilled draft, tools/train/) with tree speculation and a
# plain-decoding comparison in the same run; then the same with the target's memory-bound stand-in
# (written on first use), and both speedups side by side. stories260K alone without the pair.
DEMO_PROMPT ?= Once upon a time, there was a little robot who
DEMO_PAIR   := [ -f models/tinystories-moge/config.json ] && [ -f models/tinystories-draft/config.json ]
DEMO_SPEC   := -d models/tinystories-draft --spec tree --temp 0
DEMO_SPEEDUP = sed -n 's/.*: \([0-9.]*\)x in this run.*/\1/p' $(1) | tail -n 1
demo: deps
	$(MAKE) --no-print-directory all
	@if $(DEMO_PAIR); then \
	  echo "$(BUILD)/moge run -m models/tinystories-moge $(DEMO_SPEC) -n 200 --compare -p \"$(DEMO_PROMPT)\""; \
	  $(BUILD)/moge run -m models/tinystories-moge $(DEMO_SPEC) -n 200 --compare -p "$(DEMO_PROMPT)" 2>$(BUILD)/demo.err; \
	  rc=$$?; cat $(BUILD)/demo.err >&2; exit $$rc; \
	else \
	  echo "$(BUILD)/moge run -m models/stories260K -n 200 --temp 0"; \
	  $(BUILD)/moge run -m models/stories260K -n 200 --temp 0; \
	fi
	@$(DEMO_PAIR) || exit 0; $(call standins_sh,STANDIN_MOGE)
	@$(DEMO_PAIR) || exit 0; \
	echo "$(BUILD)/moge run -m $(STANDIN_MOGE) $(DEMO_SPEC) -n 128 --compare -p \"$(DEMO_PROMPT)\""; \
	$(BUILD)/moge run -m $(STANDIN_MOGE) $(DEMO_SPEC) -n 128 --compare -p "$(DEMO_PROMPT)" 2>$(BUILD)/demo-standin.err; \
	rc=$$?; cat $(BUILD)/demo-standin.err >&2; [ $$rc = 0 ] || exit $$rc; \
	echo "tree speculation vs plain decoding, same run: tinystories-moge $$($(call DEMO_SPEEDUP,$(BUILD)/demo.err))x," \
	  "its memory-bound stand-in ($(notdir $(STANDIN_MOGE))) $$($(call DEMO_SPEEDUP,$(BUILD)/demo-standin.err))x"

# AddressSanitizer + UBSan build of everything, then the full test suite under it (the sampling
# distribution test runs 300 seeds instead of 2000 there).
asan:
	MOGE_TEST_SEEDS=300 $(MAKE) --no-print-directory BUILD=build-asan OPT="-O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" test

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

-include $(LIB_OBJ:.o=.d) $(MPI_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_BIN:=.d) $(BENCH_BIN:=.d) $(EXAMPLES:=.d)
.SECONDARY:

# moge and a llama.cpp built outside the repository (LLAMA_CPP=its build/bin) decoding the same weights side by side (tools/bench_peer.sh; fetches nothing).
bench-peer: deps
	$(MAKE) --no-print-directory all $(BUILD)/tests/bench_forward
	@BUILD=$(BUILD) bash tools/bench_peer.sh "$(LLAMA_CPP)"
