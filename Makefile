# The two commands of a fresh machine (each creates or reuses .venv and installs what is missing):
#   make demo [ARGS="--quick"]      the two-stage recipe on Shapes (scripts/demo.sh)
#   make test [ARGS="-x tests/lm"]  the test suite on CPU (scripts/test.sh; CI runs the same)
.PHONY: demo test
demo:
	bash scripts/demo.sh $(ARGS)
test:
	bash scripts/test.sh $(ARGS)
