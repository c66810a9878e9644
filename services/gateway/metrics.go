package gateway

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/keytrail/keytrail/projections"
	"github.com/keytrail/keytrail/services/readmodel"
)

type metrics struct {
	handler                   http.Handler
	requests                  *prometheus.CounterVec
	verify, proxy             prometheus.Histogram
	propagation               prometheus.Histogram
	upstreamErrors, ejections *prometheus.CounterVec
	failOpen                  prometheus.Counter
	held                      prometheus.Counter
}

// Sub-millisecond buckets: verification takes well under a microsecond,
// propagation a few milliseconds.
var fineBuckets = prometheus.ExponentialBuckets(1e-6, 4, 12) // 1 µs … 4 s

func newMetrics(reg *prometheus.Registry, model *readmodel.Model, maxStale time.Duration, now func() time.Time,
	decisions *DecisionLog, limits *Limits, failures *FailureBudget) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keytrail_gateway_requests_total",
			Help: "Requests by API (its tenant and id) and outcome code (NONE: answered before verification)."}, []string{"tenant", "api", "code"}),
		verify: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "keytrail_gateway_verify_seconds",
			Help: "Time to route and verify a request against the read model.", Buckets: fineBuckets}),
		proxy: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "keytrail_gateway_upstream_seconds",
			Help: "Time from sending a request upstream to its response headers.", Buckets: prometheus.DefBuckets}),
		propagation: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "keytrail_gateway_propagation_seconds",
			Help: "Delay from an event's time to this gateway applying it.", Buckets: fineBuckets}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keytrail_gateway_upstream_errors_total",
			Help: "Failed attempts to reach an API's upstreams."}, []string{"tenant", "api"}),
		ejections: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keytrail_gateway_upstream_ejections_total",
			Help: "Upstreams left out after refusing a connection."}, []string{"tenant", "api"}),
		failOpen: prometheus.NewCounter(prometheus.CounterOpts{Name: "keytrail_gateway_fail_open_total",
			Help: "Requests verified against a stale read model (fail-open opt-in)."}),
		held: prometheus.NewCounter(prometheus.CounterOpts{Name: "keytrail_gateway_held_total",
			Help: "Requests held for a fresh confirmation because the last one was older than the confirm window."}),
	}
	reg.MustRegister(m.requests, m.verify, m.proxy, m.propagation, m.upstreamErrors, m.ejections, m.failOpen, m.held,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "keytrail_gateway_applied_seq",
			Help: "Stream sequence of the last event the read model applied."},
			func() float64 { return float64(model.Applied()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "keytrail_gateway_stream_refused",
			Help: "1 when the gateway refuses the event stream (gone, rewound, made anew or weakened since it saw it) and answers STALE."}, func() float64 {
			if model.Refused() != nil {
				return 1
			}
			return 0
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keytrail_gateway_events_skipped_total",
			Help: "Messages of the event log the read model did not apply: not events, unlinked, impossible, or not signed by a trusted signer (docs/signing.md)."},
			func() float64 {
				var n uint64
				model.Read(func(c *projections.Catalog) { n = c.Skipped })
				return float64(n)
			}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keytrail_gateway_signatures_vouched_total",
			Help: "Events whose signature a verified checkpoint vouched for while the read model caught up."},
			func() float64 { v, _ := model.CatchUp(); return float64(v) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keytrail_gateway_signatures_verified_total",
			Help: "Events whose signature the read model judged one by one (live events, and the log past the last checkpoint)."},
			func() float64 { _, v := model.CatchUp(); return float64(v) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "keytrail_gateway_lag",
			Help: "Messages the log held beyond the applied sequence when last asked."},
			func() float64 { _, lag, _ := model.Freshness(); return float64(lag) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "keytrail_gateway_staleness_seconds",
			Help: "Time since the read model last confirmed it was current."},
			func() float64 {
				_, _, confirmed := model.Freshness()
				if confirmed.IsZero() {
					return -1
				}
				return now().Sub(confirmed).Seconds()
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "keytrail_gateway_max_staleness_seconds",
			Help: "The staleness bound after which requests are answered STALE."},
			func() float64 { return maxStale.Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "keytrail_gateway_peers",
			Help: "Live gateways sharing rate limits, this one included."},
			func() float64 { return float64(limits.Peers()) }),
	)
	if decisions != nil {
		reg.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keytrail_gateway_decisions_dropped_total",
				Help: "Decisions not written to the decision log (writer behind, or NATS away)."},
				func() float64 { return float64(decisions.Dropped()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keytrail_gateway_decisions_offered_total",
				Help: "Decisions handed to the decision log (written + dropped, once it has stopped)."},
				func() float64 { return float64(decisions.Offered()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keytrail_gateway_decisions_written_total",
				Help: "Decisions the decision log's stream acknowledged."},
				func() float64 { return float64(decisions.Written()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keytrail_gateway_decisions_unsigned_total",
				Help: "Decisions written whose signed checkpoint could not be published (audits find no gateway vouching for them)."},
				func() float64 { return float64(decisions.Unsigned()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "keytrail_gateway_decisions_unvouched",
				Help: "Decisions published that no stored signed checkpoint names yet (the next is due within a second; more while NATS is away)."},
				func() float64 { return float64(decisions.Pending()) }))
	}
	if failures != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "keytrail_gateway_tarpit_held",
			Help: "Answers to addresses past their failure budget being held (the tarpit)."},
			func() float64 { return float64(failures.Held()) }))
	}
	m.handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	return m
}
