package kafka

import "strconv"

// What dktscore writes to its output and dead-letter topics, in both serve
// modes: the header names consumers read, and the two kinds of message.

// Header names dktscore writes on result and dead-letter messages.
const (
	HeaderContentType     = "content-type"
	ArrowStreamType       = "application/vnd.apache.arrow.stream"
	HeaderModel           = "dktscore-model"
	HeaderModelVersion    = "dktscore-model-version"
	HeaderRows            = "dktscore-rows"
	HeaderReason          = "dktscore-reason"
	HeaderSourceTopic     = "dktscore-source-topic"
	HeaderSourcePartition = "dktscore-source-partition"
	HeaderSourceOffset    = "dktscore-source-offset"
	HeaderTruncatedFrom   = "dktscore-truncated-from"
)

// MaxDeadLetterBytes is the most of a rejected value a dead letter keeps: the
// broker's default message limit less room for the headers, so the dead
// letter of an oversized input still fits.
const MaxDeadLetterBytes = DefaultMaxMessageBytes - 64<<10

// MaxResultBytes is the size a writer of result messages aims under: well
// below the broker's default message limit, because a writer can only
// estimate the encoded size (Arrow framing, padding) before encoding.
const MaxResultBytes = MaxDeadLetterBytes * 3 / 4

// ResultMessage is a result message for topic: an Arrow IPC stream (schema
// and record batches) of rows rows, all scored by modelVersion of model.
// Results have no key: they spread over the output's partitions, and carry
// their source topic, partition and offset as columns for deduplication.
func ResultMessage(topic, model, modelVersion string, rows int, arrowStream []byte) Message {
	return Message{Topic: topic, Value: arrowStream, Headers: map[string][]byte{
		HeaderContentType:  []byte(ArrowStreamType),
		HeaderModel:        []byte(model),
		HeaderModelVersion: []byte(modelVersion),
		HeaderRows:         []byte(strconv.Itoa(rows)),
	}}
}

// DeadLetter is the rejected message m for topic: its key, value and headers,
// plus headers naming the reason and where m came from. A value over
// MaxDeadLetterBytes is cut to it, and HeaderTruncatedFrom gives its size.
func DeadLetter(m Message, topic, reason string) Message {
	headers := make(map[string][]byte, len(m.Headers)+5)
	for k, v := range m.Headers {
		headers[k] = v
	}
	headers[HeaderReason] = []byte(reason)
	headers[HeaderSourceTopic] = []byte(m.Topic)
	headers[HeaderSourcePartition] = []byte(strconv.Itoa(int(m.Partition)))
	headers[HeaderSourceOffset] = []byte(strconv.FormatInt(m.Offset, 10))
	value := m.Value
	if len(value) > MaxDeadLetterBytes {
		headers[HeaderTruncatedFrom] = []byte(strconv.Itoa(len(value)))
		value = value[:MaxDeadLetterBytes]
	}
	return Message{Topic: topic, Key: m.Key, Value: value, Headers: headers}
}
