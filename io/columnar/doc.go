// Package columnar encodes per-student mastery results of the DKT model as
// Parquet (zstd) or Arrow IPC files, and as Arrow IPC stream messages for Kafka.
//
// Writers are streaming: rows are buffered in Arrow builders and written as one
// record batch (Parquet: one row group) every Config.RowsPerBatch rows, so an
// output of any size is written with memory bounded by one batch.
//
// # Mastery schema (CreateMasteryFile, NewMasteryWriter, EncodeIPCStream)
//
//	student_id        utf8                                  the student
//	seq_len           int32                                 interactions fed to the model (n)
//	mastery           fixed_size_list<item: float32>[S]     pred_all[b, n-1, :]: P(correct next) per skill k
//	window_start      int32                                 index of the first interaction fed; 0 unless the history was windowed
//	model_version     utf8                                  Config.ModelVersion
//	scored_at         timestamp[us, tz=UTC]                 wall-clock time the row's batch was written
//	source_topic      utf8     (only with Config.WithSource) Kafka topic of the input record
//	source_partition  int32    (only with Config.WithSource) its partition
//	source_offset     int64    (only with Config.WithSource) its offset
//
// # Trajectory schema (CreateTrajectoryFile, NewTrajectoryWriter): one row per step
//
//	student_id     utf8
//	step           int32                               0-based step index t
//	skill_id       int32                               skill answered at step t
//	correct        int8                                1 if answered correctly, else 0
//	mastery        fixed_size_list<item: float32>[S]   pred_all[b, t, :]
//	model_version  utf8
//
// Every column is non-nullable. S is Config.NumSkills. Both schemas carry the
// Arrow schema metadata num_skills (decimal), model_version and producer
// ("dktscore"); Parquet files also store the Arrow schema (ARROW:schema) so
// Arrow readers get the fixed-size list and the UTC timestamp back exactly.
// Parquet stores the list element as "element" (the Parquet convention), so a
// reader may see fixed_size_list<element: float32> instead of <item: float32>.
package columnar
