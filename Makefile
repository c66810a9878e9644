# Keytrail. The README's set-up is `make run` and `make test`; nothing else is
# needed on a machine with Go 1.26.

GO      ?= go
BENCH   ?= .
BENCHTIME ?= 2s
FUZZTIME ?= 30s
COUNT   ?= 1

.PHONY: run test lint browser build bench bench-gateway soak chaos fuzz clean

## run: start `keytrail dev` (embedded NATS + control plane and admin API on loopback)
run:
	$(GO) run ./cmd/keytrail dev

## test: formatting, vet, then every test with the race detector (the
## console's tests drive a headless Chromium: `browser` installs it); the
## gateway's again with one processor, the path its workers take (raw reads
## and writes, services/gateway/h1/conn_linux.go)
test: lint browser
	$(GO) test -race -count=1 -timeout 15m ./...
	GOMAXPROCS=1 $(GO) test -race -count=1 -timeout 5m ./services/gateway/...

## browser: Debian's chromium for the console's browser tests, when missing
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
		(apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium)

## lint: gofmt and go vet
lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

## build: the binary in bin/
build:
	$(GO) build -o bin/keytrail ./cmd/keytrail

## bench: benchmarks against their baselines (figures go to docs/benchmarks.md)
bench:
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -benchtime $(BENCHTIME) -count $(COUNT) -timeout 30m ./...

## bench-gateway: nginx (the floor), a bare Go proxy and the gateway under wrk, interleaved (installs nginx and wrk when missing)
BENCH_GATEWAY_FLAGS ?= -c 8,32 -d 10s -passes 3
bench-gateway: build
	@command -v nginx >/dev/null && command -v wrk >/dev/null || \
		(apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx wrk)
	$(GO) run ./cmd/bench-gateway -keytrail bin/keytrail $(BENCH_GATEWAY_FLAGS)

## chaos: a fault campaign on a real deployment (3 NATS nodes, 2 control
## nodes, 3 gateways; partitions by iptables, so as root), then a checker of
## the history (docs/reliability.md). CHAOS_FLAGS: -duration 10m -seed N
CHAOS_FLAGS ?= -duration 10m
chaos:
	@command -v iptables >/dev/null || \
		(apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q iptables)
	$(GO) run ./cmd/chaos $(CHAOS_FLAGS)

## soak: long reliability runs (repeated kill -9, leader loss, issue-vs-disable races), not in CI
soak:
	KEYTRAIL_SOAK=1 $(GO) test -count=1 -timeout 60m -run 'KillNine|LeaderLoss|NoKeyIsIssued' -v ./integration/

## fuzz: each fuzz target for FUZZTIME
FUZZ_TARGETS = ./events:FuzzDecode ./events:FuzzParseSubject ./events:FuzzDecoderAgreesWithEncodingJSON \
	./events:FuzzCanonicalAgreesWithGeneral ./events/secret:FuzzParse ./services/adminhttp:FuzzRequestBodies ./projections:FuzzReadSnapshot \
	./services/adminhttp:FuzzRevocationRoute ./services/gateway:FuzzGateway ./services/natsauth:FuzzParseIdentity \
	./services/gateway:FuzzCanonicalPathAgainstTheRouter ./services/gateway/h1:FuzzRequests ./services/gateway/h1:FuzzResponses \
	./projections:FuzzUsageReport ./services/webhooks:FuzzVerify ./services/webhooks:FuzzOpenSealed ./services/webhooks:FuzzParseSecret \
	./services/console:FuzzConsoleForms ./events:FuzzUnseal ./events:FuzzParseCheckpoint ./events/store:FuzzDecodeStored
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "$$pkg $$fn"; \
		$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	done

clean:
	rm -rf bin keytrail-data
