# Benchmarks (bench/README.md; results and how to read them in docs/benchmarks.md).
#   make bench        quick versions of every benchmark: minutes once bench/.work/ is built
#   make bench-full   the documented full versions (an hour or more on 2 cores)
# They run one after another (never two at once: they would share the cores) and stop at the first
# failure. Each report (markdown whose last line is one JSON object) is written to
# bench/.work/results/NAME.md and shown. The benchmarks need the dev extras (scikit-image, scipy,
# httpx, ray): `make` installs them with scripts/install.sh when they are missing.

PYTHON ?= .venv/bin/python
RESULTS ?= bench/.work/results
export HF_HUB_OFFLINE := 1
comma := ,

# $(call run_bench,REPORT_NAME,SCRIPT,OPTIONS): a script not (yet) in bench/ is skipped with a note.
define run_bench
	@if [ -f bench/$(2) ]; then \
		echo "== bench/$(2) $(3) -> $(RESULTS)/$(1).md" >&2; \
		$(PYTHON) bench/$(2) $(3) > $(RESULTS)/$(1).md && cat $(RESULTS)/$(1).md; \
	else \
		echo "== bench/$(2) does not exist yet: skipped" >&2; \
	fi
endef

.PHONY: bench bench-full bench-deps

bench-deps:
	@[ -x $(PYTHON) ] && $(PYTHON) -c "import httpx, ray, scipy, skimage" 2>/dev/null \
		|| EXTRAS=dev bash scripts/install.sh
	@mkdir -p $(RESULTS)

# bench_vector_index.py (recall/QPS at 100k/1M/10M), bench_sharded_search.py and
# bench_ray_indexing.py (Ray) were written alongside this Makefile: their owners check that their
# --quick versions fit in minutes and that the full lines match what docs/benchmarks.md reports.
bench: bench-deps
	$(call run_bench,query-quick,bench_query.py,--quick)
	$(call run_bench,api-load-quick,bench_api_load.py,--quick)
	$(call run_bench,indexing-quick,bench_indexing.py,--quick)
	$(call run_bench,rerank-quick,bench_rerank.py,--quick)
	$(call run_bench,vector-index-quick,bench_vector_index.py,--quick)
	$(call run_bench,sharded-search-quick,bench_sharded_search.py,--quick)
	$(call run_bench,ray-indexing-quick,bench_ray_indexing.py,--quick)
	$(call run_bench,duplicates-quick,bench_duplicates.py,--quick)
	$(call run_bench,ocr-quick,bench_ocr.py,--quick)
	$(call run_bench,indexing-ocr-quick,bench_indexing.py,--quick --paths pixseek$(comma)pixseek-ocr --corpus text)
	$(call run_bench,serve-workers-quick,bench_serve_workers.py,--quick)
	$(call run_bench,peers-quick,bench_peers.py,--quick)
	$(call run_bench,image-runtimes-quick,bench_image_runtimes.py,--quick)

bench-full: bench-deps
	$(call run_bench,query,bench_query.py,)
	$(call run_bench,api-load-1,bench_api_load.py,--clients 1)
	$(call run_bench,api-load-8,bench_api_load.py,--clients 8)
	$(call run_bench,indexing,bench_indexing.py,--decode-workers 1$(comma)2 --profile)
	$(call run_bench,rerank,bench_rerank.py,)
	$(call run_bench,vector-index,bench_vector_index.py,)
	$(call run_bench,sharded-search,bench_sharded_search.py,)
	$(call run_bench,ray-indexing,bench_ray_indexing.py,)
	$(call run_bench,duplicates,bench_duplicates.py,)
	$(call run_bench,ocr,bench_ocr.py,)
	$(call run_bench,indexing-ocr-text,bench_indexing.py,--paths pixseek$(comma)pixseek-ocr --corpus text --precisions auto)
	$(call run_bench,indexing-ocr-photos,bench_indexing.py,--paths pixseek$(comma)pixseek-ocr --precisions auto)
	$(call run_bench,serve-workers,bench_serve_workers.py,)
	$(call run_bench,peers,bench_peers.py,)
	$(call run_bench,image-runtimes,bench_image_runtimes.py,)
