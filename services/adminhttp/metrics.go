package adminhttp

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/keytrail/keytrail/projections"
)

// metrics are the admin API's Prometheus metrics, on a registry of its own.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keytrail_admin_requests_total",
			Help: "Admin API requests by route and status."}, []string{"route", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "keytrail_admin_request_duration_seconds",
			Help: "Admin API request latency by route.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}, []string{"route"}),
	}
	model := s.cfg.Model
	m.reg.MustRegister(m.requests, m.duration,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "keytrail_readmodel_applied_sequence",
			Help: "Stream sequence of the last event the read model applied."}, func() float64 { return float64(model.Applied()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "keytrail_readmodel_ready",
			Help: "1 once the read model has caught up with the log as it was at start."}, func() float64 {
			if model.Ready() {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "keytrail_readmodel_stream_refused",
			Help: "1 when the node refuses the event stream: gone, rewound, made anew or weakened since it saw it."}, func() float64 {
			if model.Refused() != nil {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "keytrail_readmodel_lag",
			Help: "Messages in the log beyond the read model's applied sequence, when last asked."}, func() float64 {
			_, lag, _ := model.Freshness()
			return float64(lag)
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "keytrail_readmodel_staleness_seconds",
			Help: "Seconds since the read model last confirmed it was current."}, func() float64 {
			_, _, confirmed := model.Freshness()
			if confirmed.IsZero() {
				return -1
			}
			return s.cfg.Now().Sub(confirmed).Seconds()
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keytrail_readmodel_skipped_total",
			Help: "Messages the read model did not apply: undecodable, unlinked or impossible."}, func() float64 {
			var n uint64
			model.Read(func(c *projections.Catalog) { n = c.Skipped })
			return float64(n)
		}),
	)
	return m
}

func (m *metrics) observe(route string, status int, seconds float64) {
	if route == "" {
		route = "unmatched"
	}
	m.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(route).Observe(seconds)
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}
