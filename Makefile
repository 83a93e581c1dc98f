# moge — build. Sources by wildcard per module folder; objects and binaries under build/.
# Targets: all (libmoge and libmoge-hub, .a and .so, + moge), install, test, bench, demo, standins, deps, asan, fuzz, clean.

CC      ?= cc
MAKEFLAGS += --no-builtin-rules
# The pkg-config packages of the inference library, of the hub library (downloads: hub/), and of
# the command (line editing for `moge chat`).
LIB_PKGS := libpcre2-8 libcjson libutf8proc
HUB_PKGS := libcjson libcurl libcrypto
PKGS    := libpcre2-8 libcjson libutf8proc libcurl libcrypto libedit
# Debian packages that provide $(PKGS) and the build tools; `make deps` installs the missing ones.
DEB_PKGS := build-essential pkg-config libpcre2-dev libcjson-dev \
            libcurl4-openssl-dev libssl-dev libutf8proc-dev libedit-dev libopenmpi-dev openmpi-bin

BUILD   ?= build
OPT     ?= -O2
# One binary for every processor of its architecture: everything is built for the baseline
# (x86-64-v2: SSE4.2 and POPCNT, every x86-64 of the last 15 years), and the cpu backend's
# kernels (every file of runtime/cpu/, CPU_SRC) once more per instruction set (CPU_VARIANTS, with
# the flags VFLAGS_<variant>); runtime/cpu_dispatch.c picks the widest this processor runs at load.
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
HUB_LDLIBS := $(shell pkg-config --libs $(HUB_PKGS) 2>/dev/null) -lpthread
LDLIBS  += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread -lm
# Open MPI (expert parallelism across processes): only runtime/comm_mpi.c includes mpi.h. Its object
# is in libmoge-internal.a (an ordinary archive: only the programs that call moge_comm_mpi_init,
# moge and tests/test_mpi, pull it and link libmpi) and in libmoge-mpi.a (libmoge.a plus MPI, for
# library users who run jobs: link it with `pkg-config --libs ompi-c`); libmoge.a and libmoge.so
# have runtime/comm_nompi.c instead (moge_comm_mpi_init says to link libmoge-mpi.a), so their
# users never need libmpi.
MPI_CFLAGS := $(shell pkg-config --cflags ompi-c 2>/dev/null)
MPI_LIBS   := $(shell pkg-config --libs ompi-c 2>/dev/null)

LIB_SRC  := $(filter-out runtime/comm_mpi.c,$(wildcard base/*.c runtime/*.c tokenizer/*.c sampling/*.c draft/*.c verify/*.c sim/*.c))
# the cpu backend's kernel files, each built once per variant: runtime/cpu/NAME-<variant>.o
CPU_SRC  := $(wildcard runtime/cpu/*.c)
CLI_SRC  := $(wildcard cli/*.c)
TEST_SRC := $(wildcard tests/test_*.c)
BENCH_SRC:= $(wildcard tests/bench_*.c)

HUB_SRC  := $(wildcard hub/*.c)
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o) $(foreach v,$(CPU_VARIANTS),$(CPU_SRC:%.c=$(BUILD)/%-$(v).o))
HUB_OBJ  := $(HUB_SRC:%.c=$(BUILD)/%.o)
# What the hub objects use of the rest (base/, and runtime/gguf.c to tell a .gguf path): a private
# copy in the hub libraries (their internal names are local there as in libmoge).
HUB_PRIVATE := $(patsubst %.c,$(BUILD)/%.o,$(wildcard base/*.c)) $(BUILD)/runtime/gguf.o
MPI_OBJ  := $(BUILD)/runtime/comm_mpi.o
# the objects of the libraries with MPI: comm_mpi.o instead of comm_nompi.o (its stub that says so)
MPI_LIB_OBJ := $(filter-out $(BUILD)/runtime/comm_nompi.o,$(LIB_OBJ)) $(MPI_OBJ)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCH_BIN:= $(BENCH_SRC:tests/%.c=$(BUILD)/tests/%)
EXAMPLES := $(patsubst examples/%.c,$(BUILD)/examples/%,$(wildcard examples/*.c))

.PHONY: all install test bench bench-peer demo standins deps asan fuzz fuzz-deps fuzz-merge clean
all: $(BUILD)/libmoge.a $(BUILD)/libmoge.so $(BUILD)/libmoge-mpi.a $(BUILD)/libmoge-hub.a $(BUILD)/libmoge-hub.so $(BUILD)/moge $(EXAMPLES)

# NONKERNEL_FLAGS: flags for every object but the kernel variants (the fuzz build's UBSan, which
# takes clang minutes per kernel variant).
NONKERNEL_FLAGS ?=
# Objects depend on the compiler and flags they were built with: a change (e.g. BASE_ARCH) rebuilds
# them instead of linking objects made for another instruction set.
FLAGS_STAMP := $(BUILD)/flags.stamp
FLAGS_TEXT  := $(CC) $(CFLAGS)$(if $(NONKERNEL_FLAGS), $(NONKERNEL_FLAGS)) | $(foreach v,$(CPU_VARIANTS),$(v): $(VFLAGS_$(v)))
$(FLAGS_STAMP): FORCE
	@mkdir -p $(BUILD)
	@echo '$(FLAGS_TEXT)' | cmp -s - $@ || echo '$(FLAGS_TEXT)' > $@
.PHONY: FORCE
FORCE:

$(BUILD)/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@echo "  CC    $<"
	@$(CC) $(CFLAGS) $(NONKERNEL_FLAGS) -c $< -o $@

$(BUILD)/runtime/comm_mpi.o: runtime/comm_mpi.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	@echo "  CC    $<"
	@$(CC) $(CFLAGS) $(MPI_CFLAGS) -c $< -o $@

# runtime/cpu/NAME.c for variant V: $(BUILD)/runtime/cpu/NAME-V.o, with V's flags and -DCPU_VARIANT=V
# (and without NONKERNEL_FLAGS).
define cpu_variant_rule
$(BUILD)/runtime/cpu/%-$(1).o: runtime/cpu/%.c $(FLAGS_STAMP)
	@mkdir -p $$(dir $$@)
	@echo "  CC    $$< ($(1))"
	@$$(CC) $$(CFLAGS) $$(VFLAGS_$(1)) -DCPU_VARIANT=$(1) -c $$< -o $$@
endef
$(foreach v,$(CPU_VARIANTS),$(eval $(call cpu_variant_rule,$(v))))

# Three forms of the library. libmoge-internal.a: every object as it is, for the command and the
# tests (which also reach internal functions). libmoge.a: the same objects linked into one
# (ld -r) whose hidden symbols are made local, so a program that links it sees only moge_* names
# and its own set_err or tk_hash cannot clash. libmoge.so: the shared library, exporting the same.
SOVERSION := 0
VERSION   := $(shell sed -n 's/^\#define MOGE_VERSION "\(.*\)"/\1/p' include/moge.h)
$(BUILD)/libmoge-internal.a: $(MPI_LIB_OBJ) $(HUB_OBJ)
	@mkdir -p $(dir $@)
	@echo "  AR    $@"
	@rm -f $@ && ar rcs $@ $^

# $(BUILD)/NAME.a from objects: one ld -r object with its hidden names made local.
define public_static
	@mkdir -p $(dir $@)
	@echo "  AR    $@"
	@ld -r -o $(@:.a=.o) $^ && objcopy --localize-hidden $(@:.a=.o) && rm -f $@ && ar rcs $@ $(@:.a=.o)
endef
# $(BUILD)/NAME.so.$(SOVERSION) and the NAME.so link, from objects and $(1) (libraries).
define public_shared
	@mkdir -p $(dir $@)
	@echo "  LINK  $@"
	@$(CC) $(CFLAGS) -shared -Wl,-soname,$(notdir $@).$(SOVERSION) -o $@.$(SOVERSION) $^ $(1) && ln -sf $(notdir $@).$(SOVERSION) $@
endef

$(BUILD)/libmoge.a: $(LIB_OBJ)
	$(public_static)
$(BUILD)/libmoge-mpi.a: $(MPI_LIB_OBJ)
	$(public_static)
$(BUILD)/libmoge.so: $(LIB_OBJ)
	$(call public_shared,$(LIB_LDLIBS))
$(BUILD)/libmoge-hub.a: $(HUB_OBJ) $(HUB_PRIVATE)
	$(public_static)
$(BUILD)/libmoge-hub.so: $(HUB_OBJ) $(HUB_PRIVATE)
	$(call public_shared,$(HUB_LDLIBS))

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
	install -m 644 include/moge.h include/moge_hub.h $(INSTALL_DIR)/include/
	for l in libmoge libmoge-hub; do \
	  install -m 644 $(BUILD)/$$l.a $(INSTALL_DIR)/lib/$$l.a && \
	  install -m 755 $(BUILD)/$$l.so.$(SOVERSION) $(INSTALL_DIR)/lib/$$l.so.$(SOVERSION) && \
	  ln -sf $$l.so.$(SOVERSION) $(INSTALL_DIR)/lib/$$l.so || exit 1; done
	install -m 755 $(BUILD)/moge $(INSTALL_DIR)/bin/moge
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' -e 's|@REQUIRES@|$(LIB_PKGS)|' \
	  moge.pc.in > $(INSTALL_DIR)/lib/pkgconfig/moge.pc
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' -e 's|@REQUIRES@|$(HUB_PKGS)|' \
	  moge-hub.pc.in > $(INSTALL_DIR)/lib/pkgconfig/moge-hub.pc

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

# Fuzzing (tests/fuzz/): libFuzzer targets built with clang, -fsanitize=fuzzer,address,undefined,
# over the library built in its own folder ($(FUZZ_BUILD)) with -fsanitize=fuzzer-no-link,address and
# UBSan everywhere but in the kernel variants of runtime/cpu/ (clang takes minutes per variant); each
# runs FUZZ_SECONDS from its committed corpus (tests/fuzz/corpus/<t> and regressions/<t>; new
# inputs go to $(FUZZ_BUILD)/corpus/<t>, crashes to $(FUZZ_BUILD)/artifacts/<t>/) with the
# dictionary tests/fuzz/<t>.dict when there is one, else tests/fuzz/moge.dict. make test replays
# the committed inputs (tests/test_fuzz_replay.c). make fuzz-merge adds the inputs of the working
# corpus that reach new edges (-use_counters=0 keeps it small) to tests/fuzz/corpus/<t>.
FUZZ_TARGETS ?= safetensors st_index config tokenizer_load encode detok chat quant_file gguf gguf_model
FUZZ_SECONDS ?= 60
FUZZ_BUILD   ?= build-fuzz
FUZZ_CC      ?= clang
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_OPTS    ?= -rss_limit_mb=2048 -timeout=10 -print_final_stats=1
# The targets that read paths write each input to files under $TMPDIR (tests/fuzz/fuzz_util.h). With
# /tmp on disk most of a run's wall time went to waiting on writeback (measured: safetensors spent
# 1056 of 2151 s on the CPU, and 30000 fixed-seed runs took 16-28 s there against 6-8 s on
# /dev/shm), so they write to a tmpfs when there is one.
FUZZ_TMPDIR  ?= $(if $(wildcard /dev/shm/.),/dev/shm,$(or $(TMPDIR),/tmp))
FUZZ_BIN     := $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz/fuzz_%)

fuzz-deps:
	@$(MAKE) --no-print-directory deps DEB_PKGS="$(DEB_PKGS) clang"

.PHONY: fuzz-lib
fuzz-lib:
	@$(MAKE) --no-print-directory BUILD=$(FUZZ_BUILD) CC=$(FUZZ_CC) OPT="-O1 -fsanitize=fuzzer-no-link,address -fno-omit-frame-pointer" \
	  NONKERNEL_FLAGS="-fsanitize=undefined -fno-sanitize-recover=undefined" $(FUZZ_BUILD)/libmoge-internal.a

$(FUZZ_BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c fuzz-lib tests/fuzz/*.h
	@mkdir -p $(dir $@)
	@echo "  FUZZ  $@"
	@$(FUZZ_CC) -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -O1 -g -Iinclude -I. $(shell pkg-config --cflags $(PKGS) 2>/dev/null) \
	  -fsanitize=fuzzer $(FUZZ_SAN) -o $@ $< $(FUZZ_BUILD)/libmoge-internal.a $(LDLIBS)

fuzz: fuzz-deps
	@$(MAKE) --no-print-directory $(FUZZ_BIN)
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_BUILD)/corpus/$$t $(FUZZ_BUILD)/artifacts/$$t; \
	  for d in tests/fuzz/corpus/$$t tests/fuzz/regressions/$$t; do [ -d $$d ] && cp -n $$d/* $(FUZZ_BUILD)/corpus/$$t/ 2>/dev/null; done; \
	  dict=tests/fuzz/$$t.dict; [ -f $$dict ] || dict=tests/fuzz/moge.dict; \
	  echo "fuzz_$$t: $(FUZZ_SECONDS) s, dictionary $$dict"; \
	  TMPDIR=$(FUZZ_TMPDIR) $(FUZZ_BUILD)/fuzz/fuzz_$$t $(FUZZ_OPTS) -max_total_time=$(FUZZ_SECONDS) -dict=$$dict \
	    -artifact_prefix=$(FUZZ_BUILD)/artifacts/$$t/ $(FUZZ_BUILD)/corpus/$$t > $(FUZZ_BUILD)/fuzz_$$t.log 2>&1; \
	  rc=$$?; grep -E '^#[0-9]+.*(DONE|pulse|NEW)' $(FUZZ_BUILD)/fuzz_$$t.log | tail -n 1; \
	  if [ $$rc -ne 0 ]; then tail -n 40 $(FUZZ_BUILD)/fuzz_$$t.log; echo "fuzz_$$t: FAILED (see $(FUZZ_BUILD)/fuzz_$$t.log, input in $(FUZZ_BUILD)/artifacts/$$t/)"; exit 1; fi; \
	done

fuzz-merge:
	@$(MAKE) --no-print-directory $(FUZZ_BIN)
	@for t in $(FUZZ_TARGETS); do mkdir -p tests/fuzz/corpus/$$t; \
	  TMPDIR=$(FUZZ_TMPDIR) $(FUZZ_BUILD)/fuzz/fuzz_$$t -merge=1 -use_counters=0 $(FUZZ_OPTS) tests/fuzz/corpus/$$t $(FUZZ_BUILD)/corpus/$$t 2>&1 | grep -E 'MERGE-OUTER: [0-9]+ new files'; done

clean:
	rm -rf build build-asan $(FUZZ_BUILD)

-include $(LIB_OBJ:.o=.d) $(MPI_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_BIN:=.d) $(BENCH_BIN:=.d) $(EXAMPLES:=.d)
.SECONDARY:

# moge and a llama.cpp built outside the repository (LLAMA_CPP=its build/bin) decoding the same weights side by side (tools/bench_peer.sh; fetches nothing).
# tools/gguf_write.py writes the GGUF files with numpy: python3-numpy joins the packages it installs.
bench-peer:
	@$(MAKE) --no-print-directory deps DEB_PKGS="$(DEB_PKGS) python3-numpy"
	$(MAKE) --no-print-directory all $(BUILD)/tests/bench_forward
	@BUILD=$(BUILD) bash tools/bench_peer.sh "$(LLAMA_CPP)"
