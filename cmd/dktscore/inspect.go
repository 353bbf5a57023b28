package main

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/dktscore/dktscore/engine"
	"github.com/dktscore/dktscore/model"
)

func inspectCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("inspect", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: dktscore inspect MODEL\n\nMODEL is a SavedModel version directory, or a base directory\n"+
			"in TF Serving's NAME/VERSION layout (the highest version is shown).")
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	info, err := model.Inspect(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "dktscore inspect: %v\n", err)
		return 1
	}
	printInfo(stdout, info)
	return 0
}

func printInfo(w io.Writer, info model.Info) {
	fmt.Fprintf(w, "model %s version %s (%s)\n", info.Name, info.Version, info.Dir)
	for _, mg := range info.MetaGraphs {
		fmt.Fprintf(w, "tags: %s\n", strings.Join(mg.Tags, ","))
		for _, sig := range mg.Signatures {
			fmt.Fprintf(w, "  signature %q (%s)\n", sig.Key, sig.Method)
			for _, part := range []struct {
				title   string
				tensors []model.TensorInfo
			}{{"inputs", sig.Inputs}, {"outputs", sig.Outputs}} {
				fmt.Fprintf(w, "    %s:\n", part.title)
				for _, t := range part.tensors {
					fmt.Fprintf(w, "      %-13s %-8s %-14s %s\n", t.Key, t.DType, shapeString(t), t.Name)
				}
			}
		}
	}
	if sig, err := model.ChooseSignature(info, "serve", ""); err == nil {
		fmt.Fprintf(w, "scored with: signature %q (score and serve pick predict_ids when present, else predict; --signature overrides)\n", sig.Key)
	} else {
		fmt.Fprintf(w, "scored with: nothing by default: %v\n", err)
	}
	fmt.Fprintf(w, "scoring path: %s\n", engine.Path(info))
	if numSkills, ok := numSkills(info); ok {
		fmt.Fprintf(w, "num_skills: %d\n", numSkills)
	} else {
		fmt.Fprintln(w, "num_skills: unknown (no predict signature with a known pred_all or input_x depth)")
	}
}

// numSkills reads S from the predict signature: pred_all's depth, else input_x's / 2.
func numSkills(info model.Info) (int, bool) {
	sig, err := info.Signature("serve", "predict")
	if err != nil {
		return 0, false
	}
	if t, ok := sig.Tensor(model.OriginNames.PredAll); ok && len(t.Shape) == 3 && t.Shape[2] > 0 {
		return int(t.Shape[2]), true
	}
	if t, ok := sig.Tensor(model.OriginNames.InputX); ok && len(t.Shape) == 3 && t.Shape[2] > 0 {
		return int(t.Shape[2] / 2), true
	}
	return 0, false
}

func shapeString(t model.TensorInfo) string {
	if t.UnknownRank {
		return "unknown rank"
	}
	if len(t.Shape) == 0 {
		return "scalar"
	}
	dims := make([]string, len(t.Shape))
	for i, d := range t.Shape {
		if d < 0 {
			dims[i] = "?"
		} else {
			dims[i] = fmt.Sprint(d)
		}
	}
	return "[" + strings.Join(dims, ",") + "]"
}
