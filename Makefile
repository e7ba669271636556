# The loops people run. `pip install -e '.[test]'` once; `make compile` after editing the .pyx.
PYTHON ?= python

.PHONY: compile test docs bench bench-quick proto clean

compile:
	$(PYTHON) setup.py build_ext --inplace

test:
	$(PYTHON) -m pytest -q

docs:
	$(PYTHON) -m mkdocs build --strict

bench:
	$(PYTHON) bench/bench_encode.py
	$(PYTHON) bench/bench_scheduler.py
	$(PYTHON) bench/runner.py

bench-quick:
	$(PYTHON) bench/runner.py --quick

proto:
	./generate_proto.sh

clean:
	rm -rf build site *.egg-info fastload/targets/*.c fastload/targets/*.so
