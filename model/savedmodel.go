package model

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"

	corepb "github.com/wamuir/graft/tensorflow/core/protobuf/for_core_protos_go_proto"
	"google.golang.org/protobuf/proto"
)

// ErrNotSavedModel means a path holds no TensorFlow SavedModel.
var ErrNotSavedModel = errors.New("not a TensorFlow SavedModel")

// ResolveDir accepts a version directory (holding saved_model.pb) or a model base
// directory in TF Serving's NAME/VERSION layout, where it picks the highest
// numeric version. It returns the version directory, the model name and version.
func ResolveDir(path string) (dir, name, version string, err error) {
	if _, err := os.Stat(filepath.Join(path, "saved_model.pb")); err == nil {
		abs, _ := filepath.Abs(path)
		return path, filepath.Base(filepath.Dir(abs)), filepath.Base(abs), nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return "", "", "", fmt.Errorf("%s: %w: %v", path, ErrNotSavedModel, err)
	}
	var versions []int
	for _, e := range entries {
		v, convErr := strconv.Atoi(e.Name())
		if convErr != nil || !e.IsDir() {
			continue
		}
		if _, statErr := os.Stat(filepath.Join(path, e.Name(), "saved_model.pb")); statErr == nil {
			versions = append(versions, v)
		}
	}
	if len(versions) == 0 {
		return "", "", "", fmt.Errorf("%s: %w: no saved_model.pb here and no numeric version directory holding one "+
			"(expected MODEL/saved_model.pb or MODEL/<version>/saved_model.pb)", path, ErrNotSavedModel)
	}
	sort.Ints(versions)
	version = strconv.Itoa(versions[len(versions)-1])
	abs, _ := filepath.Abs(path)
	return filepath.Join(path, version), filepath.Base(abs), version, nil
}

// Info describes a SavedModel without loading its weights.
type Info struct {
	Dir, Name, Version string
	MetaGraphs         []MetaGraphInfo
}

type MetaGraphInfo struct {
	Tags       []string
	Signatures []SignatureInfo // sorted by key
}

type SignatureInfo struct {
	Key, Method     string
	Inputs, Outputs []TensorInfo // sorted by key
}

type TensorInfo struct {
	Key, Name, DType string
	Shape            []int64 // -1 for an unknown dimension; nil for unknown rank
	UnknownRank      bool
}

// Inspect reads saved_model.pb of the model at path (see ResolveDir).
func Inspect(path string) (Info, error) {
	dir, name, version, err := ResolveDir(path)
	if err != nil {
		return Info{}, err
	}
	raw, err := os.ReadFile(filepath.Join(dir, "saved_model.pb"))
	if err != nil {
		return Info{}, fmt.Errorf("%s: %w: %v", dir, ErrNotSavedModel, err)
	}
	var sm corepb.SavedModel
	if err := proto.Unmarshal(raw, &sm); err != nil {
		return Info{}, fmt.Errorf("%s/saved_model.pb: %w: cannot decode it (%v); re-export the model with tf.saved_model",
			dir, ErrNotSavedModel, err)
	}
	info := Info{Dir: dir, Name: name, Version: version}
	for _, mg := range sm.GetMetaGraphs() {
		mgi := MetaGraphInfo{Tags: mg.GetMetaInfoDef().GetTags()}
		for key, sig := range mg.GetSignatureDef() {
			mgi.Signatures = append(mgi.Signatures, SignatureInfo{
				Key: key, Method: sig.GetMethodName(),
				Inputs: tensorInfos(sig.GetInputs()), Outputs: tensorInfos(sig.GetOutputs()),
			})
		}
		sort.Slice(mgi.Signatures, func(i, j int) bool { return mgi.Signatures[i].Key < mgi.Signatures[j].Key })
		info.MetaGraphs = append(info.MetaGraphs, mgi)
	}
	if len(info.MetaGraphs) == 0 {
		return Info{}, fmt.Errorf("%s/saved_model.pb: %w: it holds no meta graph", dir, ErrNotSavedModel)
	}
	return info, nil
}

func tensorInfos(m map[string]*corepb.TensorInfo) []TensorInfo {
	var out []TensorInfo
	for key, ti := range m {
		t := TensorInfo{Key: key, Name: ti.GetName(), DType: dtypeName(ti.GetDtype())}
		if shape := ti.GetTensorShape(); shape.GetUnknownRank() {
			t.UnknownRank = true
		} else {
			t.Shape = []int64{}
			for _, d := range shape.GetDim() {
				t.Shape = append(t.Shape, d.GetSize())
			}
		}
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// dtypeName turns DT_FLOAT into "float32" and so on, as users see them in Python.
func dtypeName(dt interface{ String() string }) string {
	names := map[string]string{
		"DT_FLOAT": "float32", "DT_DOUBLE": "float64", "DT_INT32": "int32", "DT_INT64": "int64",
		"DT_INT8": "int8", "DT_UINT8": "uint8", "DT_STRING": "string", "DT_BOOL": "bool", "DT_HALF": "float16",
	}
	if n, ok := names[dt.String()]; ok {
		return n
	}
	return dt.String()
}

// Signature finds a signature in the meta graph carrying tag.
func (info Info) Signature(tag, key string) (SignatureInfo, error) {
	for _, mg := range info.MetaGraphs {
		if !contains(mg.Tags, tag) {
			continue
		}
		var keys []string
		for _, s := range mg.Signatures {
			if s.Key == key {
				return s, nil
			}
			keys = append(keys, s.Key)
		}
		return SignatureInfo{}, fmt.Errorf("%s: no signature %q under tag %q (it has %v); pass the right --signature",
			info.Dir, key, tag, keys)
	}
	return SignatureInfo{}, fmt.Errorf("%s: no meta graph tagged %q; pass the right --tags", info.Dir, tag)
}

// Tensor finds a signature input or output by key.
func (s SignatureInfo) Tensor(key string) (TensorInfo, bool) {
	for _, list := range [][]TensorInfo{s.Inputs, s.Outputs} {
		for _, t := range list {
			if t.Key == key {
				return t, true
			}
		}
	}
	return TensorInfo{}, false
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// SignatureDefs returns the signatures of the meta graph tagged tag in the
// SavedModel at dir (a version directory), as saved_model.pb holds them: what
// TF Serving's GetModelMetadata answers.
func SignatureDefs(dir, tag string) (map[string]*corepb.SignatureDef, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "saved_model.pb"))
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %v", dir, ErrNotSavedModel, err)
	}
	var sm corepb.SavedModel
	if err := proto.Unmarshal(raw, &sm); err != nil {
		return nil, fmt.Errorf("%s/saved_model.pb: %w: cannot decode it (%v)", dir, ErrNotSavedModel, err)
	}
	for _, mg := range sm.GetMetaGraphs() {
		if slices.Contains(mg.GetMetaInfoDef().GetTags(), tag) {
			return mg.GetSignatureDef(), nil
		}
	}
	return nil, fmt.Errorf("%s: no meta graph is tagged %q", dir, tag)
}
