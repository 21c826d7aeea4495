package producer

import "github.com/prometheus/client_golang/prometheus"

// Values of the reason label of switchboard_events_rejected_total.
const (
	reasonMalformed   = "malformed"   // the HTTP body is not the JSON expected
	reasonInvalid     = "invalid"     // a field failed validation
	reasonUnavailable = "unavailable" // JetStream did not acknowledge the event
)

// Metrics counts what the producer accepts and rejects. The counters of
// every label value are resolved once, so counting costs no map lookup.
type Metrics struct {
	acceptedNew         prometheus.Counter
	acceptedDuplicate   prometheus.Counter
	rejectedMalformed   prometheus.Counter
	rejectedInvalid     prometheus.Counter
	rejectedUnavailable prometheus.Counter
}

// NewMetrics creates the producer's metrics and registers them with reg;
// with a nil reg they count but are not exported. Like MustRegister, it
// panics when reg already holds them: create one Metrics per registry and
// share it between clients.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	accepted := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchboard_events_accepted_total",
		Help: "Events acknowledged by JetStream; duplicate=true for an id accepted before, which is not delivered again.",
	}, []string{"duplicate"})
	rejected := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchboard_events_rejected_total",
		Help: "Events refused, by reason: malformed (bad JSON), invalid (failed validation), unavailable (JetStream did not acknowledge).",
	}, []string{"reason"})
	if reg != nil {
		reg.MustRegister(accepted, rejected)
	}
	return &Metrics{
		acceptedNew:         accepted.WithLabelValues("false"),
		acceptedDuplicate:   accepted.WithLabelValues("true"),
		rejectedMalformed:   rejected.WithLabelValues(reasonMalformed),
		rejectedInvalid:     rejected.WithLabelValues(reasonInvalid),
		rejectedUnavailable: rejected.WithLabelValues(reasonUnavailable),
	}
}

func (m *Metrics) accepted(duplicate bool) {
	if duplicate {
		m.acceptedDuplicate.Inc()
		return
	}
	m.acceptedNew.Inc()
}
