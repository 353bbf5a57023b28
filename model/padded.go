package model

import (
	"context"
	"fmt"
)

// PaddedStep returns what the model gives at a padded step, pred_all[b, t, :]
// for t ≥ sequence_len[b]: the recurrent layers output zeros past a row's
// length, so every padded step of every row holds the output layer's answer
// to a zero input, one vector per version. Callers that must answer for
// padded positions exactly as the model would (the TF Serving front door)
// fill them with it instead of computing them.
func (m *Model) PaddedStep(ctx context.Context) ([]float32, error) {
	in := Inputs{Size: 1, Steps: 2, SkillID: make([]int32, 2), Correct: make([]int32, 2), TargetID: make([]int32, 2), SeqLen: []int32{1}}
	sess, err := m.takeSession(ctx)
	if err != nil {
		return nil, err
	}
	defer m.returnSession(sess)
	defer sess.forget()
	if err := sess.fill(in, m.NumSkills); err != nil {
		return nil, fmt.Errorf("model %s/%s: %w", m.Name, m.Version, err)
	}
	fetched, err := sess.saved.Session.Run(sess.feeds, sess.fetches, nil)
	if err != nil {
		return nil, fmt.Errorf("model %s/%s: run %s: %w", m.Name, m.Version, m.Signature, err)
	}
	predAll, ok := fetched[0].Value().([][][]float32)
	if !ok || len(predAll) != 1 || len(predAll[0]) != 2 || len(predAll[0][1]) != m.NumSkills {
		return nil, fmt.Errorf("model %s/%s: pred_all has shape %v, want [1 2 %d]", m.Name, m.Version, fetched[0].Shape(), m.NumSkills)
	}
	return predAll[0][1], nil
}
