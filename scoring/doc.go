// Package scoring runs `dktscore score`: it reads a file of student
// histories, scores them through the batching pipeline on one model
// version, and writes mastery (and optionally per-step trajectories, the
// rejects and each student's final LSTM state) to Parquet or Arrow files.
package scoring
