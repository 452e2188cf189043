// Package events carries pullgate's decisions from where they are made to
// everyone who must hear of them: one Event type, and the Sinks it fans out
// to (Fanout): the log line, the Prometheus metrics, the admin page's live
// view (admin.Live), the bus to the other replicas (Bus), the audit log
// (Audit) and the signed webhook alerts (Webhook). The audit record and
// the alert body are made from the Event, each in one function.
//
// events never decides and never blocks or holds up a pull: a sink that
// cannot keep up drops or queues, and says so in a metric.
package events
