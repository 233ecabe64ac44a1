# Convenience targets; the scripts are the source of truth (a fresh Debian may lack make).
.PHONY: bootstrap check test demo bench
bootstrap:
	bash scripts/bootstrap
check:
	bash scripts/check
test:
	bash scripts/test
demo:
	bash scripts/demo
bench:
	.venv/bin/python bench/bench_codec.py
