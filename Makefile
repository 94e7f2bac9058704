# kdap — see README.md. Every target works on a fresh machine: Go modules
# come from the module proxy; the test cluster installs its Debian packages.
GO ?= go
BIN := bin

.PHONY: all build demo test deps unit vscode-unit vsix e2e bench bench-sessions lint generate images release release-check cluster-up cluster-down e2e-clean clean

all: build

## build: compile kdap into bin/
build:
	$(GO) build -o $(BIN)/kdap ./cmd/kdap

## demo: kdap's main job — local cluster, sample Go service, kdap, a DAP
## client stopping at a breakpoint and printing the stack and locals
demo: build
	$(GO) run ./test/demo --kdap $(BIN)/kdap

## test: everything CI runs — lint, unit tests, e2e tests on the local
## cluster, and the benchmarks (figures printed, nothing asserted on time)
test: deps lint unit release-check e2e bench

## deps: the Debian packages the tests need (installed if missing; root)
deps:
	bash test/install-deps.sh

## images: build kdap's debugger images (no Docker needed) and push them to
## REPOSITORY with your registry credentials, e.g.
## make images REPOSITORY=registry.example.com/kdap [TAG=v1.2.3]; then run kdap
## with --image-repository REPOSITORY (or KDAP_IMAGE_REPOSITORY)
images: deps
	@test -n "$(REPOSITORY)" || { echo "make images REPOSITORY=registry.example.com/kdap [TAG=...]"; exit 2; }
	$(GO) run ./images/publish $(if $(TAG),--tag $(TAG)) $(REPOSITORY)

## release: what a release publishes (make release VERSION=v1.2.3): kdap for
## linux/darwin/windows × amd64/arm64 with checksums, the .vsix and the krew
## manifest, in dist/ (the release workflow runs it, then make images)
release:
	@test -n "$(VERSION)" || { echo "make release VERSION=v1.2.3"; exit 2; }
	bash release/build.sh $(VERSION) dist

## release-check: the release's build part, dry, checked (release/check.sh)
release-check:
	bash release/check.sh

## generate: rewrite what vscode-extension/package.json says about runtimes
## from the runtime registry (a unit test fails when it is stale)
generate:
	$(GO) test ./internal/vscodegen/ -run PackageJSON -update

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags e2e ./test/e2e/...

unit: vscode-unit
	$(GO) test -race -count=1 ./...

## vscode-unit: the VS Code extension's unit tests (configuration resolution, no VS Code)
vscode-unit:
	cd vscode-extension && npm ci --no-audit --no-fund && npm test

## vsix: build the VS Code extension into vscode-extension/kdap.vsix
vsix:
	cd vscode-extension && npm ci --no-audit --no-fund && npm run package

## e2e: brings the test cluster up if needed and leaves it up for the next run;
## the VS Code tests in it build the .vsix and install code-server themselves
## (vscode-extension/test/setup.sh)
e2e:
	$(GO) test -tags e2e -count=1 -v -timeout 60m ./test/e2e/...

## bench: DAP round trips through kdap vs straight to the same Delve (over
## loopback, and through the local cluster's port-forward), the attach
## latency breakdown beside the manual path's, what kdap's diagnostics
## cost a serving target (pause per dump, latency while profiling), and 4
## sessions held at once through one kdap dap
bench:
	$(GO) test -run '^$$' -bench . -benchtime 300x ./test/bench/
	$(GO) test -tags e2e -run '^$$' -bench 'AttachLatency|RelayThroughPortForward|Diagnostics|Snapshots' -benchtime 5x -timeout 25m ./test/e2e/
	$(GO) test -tags e2e -run '^$$' -bench 'ManySessions' -benchtime 1x -timeout 15m ./test/e2e/ -args -sessions=4

## bench-sessions: BenchmarkManySessions at a team's size: SESSIONS (50)
## pods, Go and Python, debugged at once through one kdap dap (make bench
## runs it with 4)
SESSIONS ?= 50
bench-sessions:
	$(GO) test -tags e2e -run '^$$' -bench 'ManySessions' -benchtime 1x -timeout 60m ./test/e2e/ -args -sessions=$(SESSIONS)

cluster-up:
	$(GO) run ./test/cluster up

cluster-down e2e-clean:
	$(GO) run ./test/cluster down

clean:
	rm -rf $(BIN) vscode-extension/node_modules vscode-extension/dist vscode-extension/out vscode-extension/kdap.vsix
