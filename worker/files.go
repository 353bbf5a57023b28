package worker

import (
	"context"
	"errors"

	"github.com/dktscore/dktscore/io/columnar"
	"github.com/dktscore/dktscore/io/records"
)

// RecordSource hands out the sequences of a decoded input (a file). Its acks
// do nothing: a file has no positions to commit.
type RecordSource struct {
	Reader records.Reader
}

func (s RecordSource) Read(ctx context.Context) (Work, Ack, error) {
	if err := ctx.Err(); err != nil {
		return Work{}, nil, err
	}
	seq, err := s.Reader.Next()
	var reject *records.RejectError
	switch {
	case errors.As(err, &reject):
		return Work{Reject: reject}, nil, nil
	case err != nil:
		return Work{}, nil, err // io.EOF included
	}
	return Work{Seq: seq}, nil, nil
}

// RejectLogSink records rejects as JSON Lines (the rejects file).
type RejectLogSink struct {
	Log *records.RejectLog
}

func (s RejectLogSink) Reject(_ context.Context, w Work) error {
	return s.Log.Write(w.Reject)
}

// ColumnarSink writes mastery rows, and per-step rows when a trajectory writer
// is set, to Parquet or Arrow files. Rows are durable once the files are
// closed; a file job acks nothing that a crash could lose.
type ColumnarSink struct {
	Mastery    *columnar.MasteryWriter
	Trajectory *columnar.TrajectoryWriter // nil unless --trajectory
}

func (s ColumnarSink) Write(_ context.Context, results []Result) error {
	rows := make([]columnar.MasteryRow, len(results))
	for i, r := range results {
		rows[i] = columnar.MasteryRow{StudentID: r.StudentID, SeqLen: int32(r.SeqLen),
			WindowStart: int32(r.WindowStart), Mastery: r.Mastery, ModelVersion: r.ModelVersion}
	}
	if err := s.Mastery.Write(rows...); err != nil {
		return err
	}
	if s.Trajectory == nil {
		return nil
	}
	for _, r := range results {
		numSkills := len(r.Mastery)
		steps := make([]columnar.StepRow, r.SeqLen)
		for t := range steps {
			steps[t] = columnar.StepRow{StudentID: r.StudentID, Step: int32(r.WindowStart + t),
				SkillID: r.Skills[t], Correct: r.Correct[t], Mastery: r.Trajectory[t*numSkills : (t+1)*numSkills]}
		}
		if err := s.Trajectory.Write(steps...); err != nil {
			return err
		}
	}
	return nil
}
