// Package events carries pullgate's decisions from where they are made to
// everyone who must hear of them: one Event type, and the Sinks it fans out
// to.
//
// events never decides and never holds up a pull: a sink that cannot keep
// up drops or queues, and says so in a metric.
package events
