package records

import (
	"context"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// parquetBatchRows is how many rows one record batch holds: memory stays
// bounded by a batch plus the current student, whatever the file size.
const parquetBatchRows = 64 << 10

// parquetRows reads the long layout row group by row group, a record batch
// at a time. Rows are numbered from 1 in file order; rejects name the row,
// Line stays 0. Reading one row group at a time lets a read error name the
// row group and its rows, and keeps every row group before it usable.
type parquetRows struct {
	name      string
	numSkills int
	pf        *file.Reader
	fr        *pqarrow.FileReader
	leaves    []int
	rg        int // row group being read; -1 before the first
	rgFirst   int // first row of row group rg (1-based)
	rr        pqarrow.RecordReader
	i, n      int
	rowBase   int    // rows in earlier batches
	cols      [4]int // batch column of student, skill, correct, timestamp (-1: none)
	student   arrow.Array
	skill     arrow.Array
	correct   arrow.Array
	ts        arrow.Array
}

func newParquetReader(r io.Reader, name string, opts Options, batchRows int64) (rd Reader, err error) {
	ras, ok := r.(parquet.ReaderAtSeeker)
	if !ok {
		return nil, fmt.Errorf("records: %s: Parquet needs random access (io.ReaderAt and io.Seeker): pass a file path, not a pipe or stream", name)
	}
	// arrow-go can panic on corrupt metadata; a corrupt file must be an error.
	defer func() {
		if p := recover(); p != nil {
			rd, err = nil, fmt.Errorf("records: %s is not a readable Parquet file (decoder panic: %v)", name, p)
		}
	}()
	pf, err := file.NewParquetReader(ras)
	if err != nil {
		return nil, fmt.Errorf("records: %s is not a readable Parquet file: %w (check --input-format)", name, err)
	}
	dropStoredArrowSchema(pf)
	p := &parquetRows{name: name, numSkills: opts.NumSkills, pf: pf}
	// pf.Close would close r, which belongs to the caller (Open closes its file).
	if err := p.open(batchRows); err != nil {
		return nil, err
	}
	return newLongReader(name, p, opts.NumSkills, p.cols[3] >= 0, false), nil
}

func (p *parquetRows) open(batchRows int64) error {
	sc := p.pf.MetaData().Schema
	var leaves []int
	var missing []string
	for _, col := range []string{colStudent, colSkill, colCorrect, colTimestamp} {
		idx := -1
		for i := 0; i < sc.NumColumns(); i++ {
			c := sc.Column(i)
			// Only top-level columns: a nested field of the same name is not ours.
			if strings.EqualFold(c.Name(), col) && c.ColumnPath().String() == c.Name() {
				idx = i
				break
			}
		}
		if idx < 0 {
			if col != colTimestamp {
				missing = append(missing, col)
			}
			continue
		}
		leaves = append(leaves, idx)
	}
	if len(missing) > 0 {
		return fmt.Errorf("records: %s: the Parquet schema lacks column(s) %s; the long layout needs student_id, skill_id, correct and optionally timestamp", p.name, strings.Join(missing, ", "))
	}
	fr, err := pqarrow.NewFileReader(p.pf, pqarrow.ArrowReadProperties{BatchSize: batchRows}, memory.DefaultAllocator)
	if err != nil {
		return fmt.Errorf("records: %s: cannot read the Parquet schema: %w", p.name, err)
	}
	p.fr, p.leaves, p.rg = fr, leaves, -1
	// A reader over all row groups, only for the selected columns' Arrow
	// schema: pages are read on Next, never here.
	all, err := fr.GetRecordReader(context.Background(), leaves, nil)
	if err != nil {
		return fmt.Errorf("records: %s: cannot read Parquet columns: %w", p.name, err)
	}
	asc := all.Schema()
	all.Release()
	for k, col := range []string{colStudent, colSkill, colCorrect, colTimestamp} {
		p.cols[k] = -1
		for i, f := range asc.Fields() {
			if strings.EqualFold(f.Name, col) {
				p.cols[k] = i
				break
			}
		}
	}
	check := func(k int, want string, ok func(arrow.DataType) bool) error {
		if p.cols[k] < 0 {
			return nil
		}
		f := asc.Field(p.cols[k])
		if !ok(f.Type) {
			return fmt.Errorf("records: %s: Parquet column %s has type %s; it must be %s", p.name, f.Name, f.Type, want)
		}
		return nil
	}
	for _, err := range []error{
		check(0, "a string or an integer", func(t arrow.DataType) bool { return isStringType(t) || isIntType(t) }),
		check(1, "an integer", isIntType),
		check(2, "an integer or a boolean", func(t arrow.DataType) bool { return isIntType(t) || valueType(t).ID() == arrow.BOOL }),
		check(3, "an integer, a float, a timestamp or an RFC3339 string", func(t arrow.DataType) bool {
			switch valueType(t).ID() {
			case arrow.TIMESTAMP, arrow.DATE32, arrow.DATE64, arrow.FLOAT32, arrow.FLOAT64:
				return true
			}
			return isIntType(t) || isStringType(t)
		}),
	} {
		if err != nil {
			return err
		}
	}
	if p.cols[0] < 0 || p.cols[1] < 0 || p.cols[2] < 0 {
		return fmt.Errorf("records: %s: Parquet columns student_id, skill_id and correct could not be read as flat columns", p.name)
	}
	return nil
}

// dropStoredArrowSchema removes the Arrow schema that Arrow writers embed in
// the footer (key "ARROW:schema"). The long layout's types come through the
// Parquet logical types without it, and arrow-go v18.8.0 decodes that blob
// without bounds: a corrupt one made it allocate tens of GiB (found by
// FuzzParquet; see testdata/fuzz/FuzzParquet).
func dropStoredArrowSchema(pf *file.Reader) {
	md := pf.MetaData()
	if md == nil || md.FileMetaData == nil {
		return
	}
	kv := md.KeyValueMetadata()
	kept := kv[:0:0]
	for _, e := range kv {
		if e != nil && e.Key != "ARROW:schema" {
			kept = append(kept, e)
		}
	}
	md.FileMetaData.KeyValueMetadata = kept
}

// valueType looks through dictionary encoding.
func valueType(t arrow.DataType) arrow.DataType {
	if d, ok := t.(*arrow.DictionaryType); ok {
		return d.ValueType
	}
	return t
}

func isIntType(t arrow.DataType) bool {
	switch valueType(t).ID() {
	case arrow.INT8, arrow.INT16, arrow.INT32, arrow.INT64, arrow.UINT8, arrow.UINT16, arrow.UINT32, arrow.UINT64:
		return true
	}
	return false
}

func isStringType(t arrow.DataType) bool {
	switch valueType(t).ID() {
	case arrow.STRING, arrow.LARGE_STRING, arrow.STRING_VIEW, arrow.BINARY, arrow.LARGE_BINARY:
		return true
	}
	return false
}

func (p *parquetRows) close() error {
	if p.rr != nil {
		p.rr.Release()
		p.rr = nil
	}
	p.rg = p.pf.NumRowGroups() // no more reading
	return nil
}

// rowGroupSpan names row group rg and its rows for messages.
func (p *parquetRows) rowGroupSpan() string {
	n := int(p.pf.MetaData().RowGroup(p.rg).NumRows())
	return fmt.Sprintf("row group %d of %d (rows %d-%d)", p.rg, p.pf.NumRowGroups(), p.rgFirst, p.rgFirst+n-1)
}

// readError is a fatal error at row group rg: where, what, what was read.
func (p *parquetRows) readError(cause any) error {
	read := "no row before it was read"
	if p.rowBase > 0 {
		read = fmt.Sprintf("rows 1-%d before it were read", p.rowBase)
	}
	return fmt.Errorf("records: %s: cannot read Parquet %s: %v; %s; the file is damaged: re-export it, or rewrite it without the damaged row group", p.name, p.rowGroupSpan(), cause, read)
}

func (p *parquetRows) next() (row longRow, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = p.readError(fmt.Sprintf("decoder panic: %v", r))
		}
	}()
	for p.i >= p.n {
		p.rowBase += p.n
		p.i, p.n = 0, 0
		if p.rr == nil || !p.rr.Next() {
			if p.rr != nil {
				rerr := p.rr.Err()
				p.rr.Release()
				p.rr = nil
				if rerr != nil {
					return longRow{}, p.readError(rerr)
				}
			}
			if err := p.nextRowGroup(); err != nil {
				return longRow{}, err
			}
			continue
		}
		b := p.rr.RecordBatch()
		p.n = int(b.NumRows())
		p.student, p.skill, p.correct = b.Column(p.cols[0]), b.Column(p.cols[1]), b.Column(p.cols[2])
		p.ts = nil
		if p.cols[3] >= 0 {
			p.ts = b.Column(p.cols[3])
		}
	}
	i := p.i
	p.i++
	return p.row(i, p.rowBase+i+1), nil
}

// nextRowGroup opens the record reader of the next row group; io.EOF after
// the last.
func (p *parquetRows) nextRowGroup() error {
	if p.rg >= 0 && p.rg < p.pf.NumRowGroups() {
		p.rgFirst += int(p.pf.MetaData().RowGroup(p.rg).NumRows())
	} else if p.rg < 0 {
		p.rgFirst = 1
	}
	p.rg++
	if p.rg >= p.pf.NumRowGroups() {
		return io.EOF
	}
	rr, err := p.fr.GetRecordReader(context.Background(), p.leaves, []int{p.rg})
	if err != nil {
		return p.readError(err)
	}
	p.rr = rr
	return nil
}

func (p *parquetRows) row(i, rowNo int) longRow {
	student, ok := arrowString(p.student, i)
	if !ok || student == "" {
		return longRow{pos: rowNo, orphan: true, problem: problemf(RejectBadStudentID, "row %d has no student_id (null or empty); fill it in or remove the row", rowNo)}
	}
	row := longRow{student: student, pos: rowNo}
	skill, ok := arrowInt(p.skill, i)
	if !ok {
		row.problem = problemf(RejectMalformed, "row %d: skill_id is null", rowNo)
		return row
	}
	if skill < 0 || skill >= int64(p.numSkills) {
		row.problem = skillOutOfRange(fmt.Sprintf("row %d: ", rowNo), skill, "", p.numSkills)
		return row
	}
	row.skill = int32(skill)
	c, ok := arrowInt(p.correct, i)
	if !ok || (c != 0 && c != 1) {
		row.problem = problemf(RejectBadCorrect, "row %d: correct %s must be 0 or 1", rowNo, arrowValueStr(p.correct, i))
		return row
	}
	row.correct = int8(c)
	if p.ts != nil {
		if row.ts, ok = arrowTimestamp(p.ts, i); !ok {
			row.problem = problemf(RejectBadTimestamp, "row %d: timestamp %s is not an integer/float epoch, a timestamp or an RFC3339 time; fix it or drop the timestamp column to keep file order", rowNo, arrowValueStr(p.ts, i))
		}
	}
	return row
}

func arrowValueStr(a arrow.Array, i int) string {
	if a.IsNull(i) {
		return "null"
	}
	return quoteSample([]byte(a.ValueStr(i)))
}

func arrowString(a arrow.Array, i int) (string, bool) {
	if a.IsNull(i) {
		return "", false
	}
	switch a := a.(type) {
	case *array.Dictionary:
		return arrowString(a.Dictionary(), a.GetValueIndex(i))
	case *array.String:
		return a.Value(i), true
	case *array.LargeString:
		return a.Value(i), true
	case *array.StringView:
		return a.Value(i), true
	case *array.Binary:
		return string(a.Value(i)), true
	case *array.LargeBinary:
		return string(a.Value(i)), true
	}
	if v, ok := arrowInt(a, i); ok {
		return strconv.FormatInt(v, 10), true
	}
	return "", false
}

// arrowInt reads an integer or boolean cell; uint64 beyond int64 reads as
// MaxInt64, which every range check rejects.
func arrowInt(a arrow.Array, i int) (int64, bool) {
	if a.IsNull(i) {
		return 0, false
	}
	switch a := a.(type) {
	case *array.Dictionary:
		return arrowInt(a.Dictionary(), a.GetValueIndex(i))
	case *array.Int8:
		return int64(a.Value(i)), true
	case *array.Int16:
		return int64(a.Value(i)), true
	case *array.Int32:
		return int64(a.Value(i)), true
	case *array.Int64:
		return a.Value(i), true
	case *array.Uint8:
		return int64(a.Value(i)), true
	case *array.Uint16:
		return int64(a.Value(i)), true
	case *array.Uint32:
		return int64(a.Value(i)), true
	case *array.Uint64:
		return int64(min(a.Value(i), math.MaxInt64)), true
	case *array.Boolean:
		if a.Value(i) {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

// arrowTimestamp orders timestamp, date and integer cells as integers in
// their column's unit, floats as floats, strings as parseTimestamp reads them.
func arrowTimestamp(a arrow.Array, i int) (tsKey, bool) {
	if a.IsNull(i) {
		return tsKey{}, false
	}
	switch a := a.(type) {
	case *array.Dictionary:
		return arrowTimestamp(a.Dictionary(), a.GetValueIndex(i))
	case *array.Timestamp:
		return tsKey{kind: tsTime, isInt: true, i: int64(a.Value(i))}, true
	case *array.Date32:
		return tsKey{kind: tsTime, isInt: true, i: int64(a.Value(i))}, true
	case *array.Date64:
		return tsKey{kind: tsTime, isInt: true, i: int64(a.Value(i))}, true
	case *array.Float32:
		return floatKey(float64(a.Value(i)))
	case *array.Float64:
		return floatKey(a.Value(i))
	}
	if isStringType(a.DataType()) {
		s, _ := arrowString(a, i)
		return parseTimestamp([]byte(strings.TrimSpace(s)))
	}
	if v, ok := arrowInt(a, i); ok {
		return tsKey{kind: tsNumber, isInt: true, i: v}, true
	}
	return tsKey{}, false
}

func floatKey(f float64) (tsKey, bool) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return tsKey{}, false
	}
	return tsKey{kind: tsNumber, f: f}, true
}
