# Shortcuts for scripts/dev (which works without make on a fresh Debian 12).
.PHONY: run test testbed-up testbed-down
run:
	scripts/dev run
test:
	scripts/dev test
testbed-up:
	scripts/testbed up
testbed-down:
	scripts/testbed down
