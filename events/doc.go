// Package events is event mode: each input message is one interaction, and
// each student's LSTM state is carried from event to event (in memory, and in
// a compacted changelog topic that survives restarts and rebalances), so an
// event costs one model step instead of a re-score of the whole history.
// Pipeline applies Kafka polls of events to the carried states and writes
// results, dead letters and states durably, in that order.
package events
