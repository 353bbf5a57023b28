package scoring

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// outputFile is one file a score run writes, described for messages.
type outputFile struct {
	path string
	what string // how the user names it, e.g. "--output x.parquet"
	fix  string // what to change when it cannot be written
}

// outputFiles lists every file a run with o writes.
func outputFiles(o Options) []outputFile {
	const fixOutput = "choose another --output"
	files := []outputFile{{o.Output, "--output " + o.Output, fixOutput}}
	if o.Trajectory {
		p := trajectoryName(o.Output)
		files = append(files, outputFile{p, "the trajectory file " + p + " (--trajectory: --output with .trajectory before the extension)", fixOutput})
	}
	if o.EmitState != "" {
		files = append(files, outputFile{o.EmitState, "--emit-state " + o.EmitState, "choose another --emit-state file"})
	}
	p := rejectsName(o.Output)
	files = append(files, outputFile{p, "the rejects file " + p + " (--output + .rejects.jsonl)", fixOutput})
	return files
}

// rejectsName is where a run's rejects go.
func rejectsName(output string) string { return output + ".rejects.jsonl" }

// CheckPaths refuses, before any work, output paths that a run would destroy
// or could not write: the input (by any name: hard link, symlink, another
// spelling), two outputs that are one file, a directory, a symbolic link, or
// an existing file that is not a regular file (a device such as /dev/null, a
// FIFO, a socket). Outputs are written to a temporary file and renamed into
// place, so a symbolic link would be replaced, not written through: it is
// refused rather than silently turned into a plain file.
func CheckPaths(o Options) error {
	var errs []error
	if o.EmitState != "" && !rereadable(o.Input) {
		errs = append(errs, fmt.Errorf("--emit-state reads --input %s a second time, which a pipe or stdin cannot give: save the input to a file and pass that, or drop --emit-state", o.Input))
	}
	var inputInfo fs.FileInfo
	if o.Input != "" {
		inputInfo, _ = os.Stat(o.Input) // a missing input is reported when it is opened
	}
	type seen struct {
		out  outputFile
		key  string
		info fs.FileInfo // nil when the file does not exist yet
	}
	var done []seen
	for _, out := range outputFiles(o) {
		info, err := os.Lstat(out.path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			info = nil
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: cannot check it: %v; %s", out.what, pathErrCause(err), out.fix))
			continue
		case info.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(out.path)
			errs = append(errs, fmt.Errorf("%s is a symbolic link (to %s): outputs are never written through a link; name the target itself, or %s", out.what, target, out.fix))
			continue
		case info.IsDir():
			errs = append(errs, fmt.Errorf("%s is a directory; name a file in it, or %s", out.what, out.fix))
			continue
		case !info.Mode().IsRegular():
			errs = append(errs, fmt.Errorf("%s exists and is not a regular file (%s); %s", out.what, fileKind(info.Mode()), out.fix))
			continue
		}
		if info != nil && inputInfo != nil && os.SameFile(info, inputInfo) {
			errs = append(errs, fmt.Errorf("%s is the --input file %s: scoring would overwrite its own input; %s", out.what, o.Input, out.fix))
			continue
		}
		key := pathKey(out.path)
		for _, prev := range done {
			if key == prev.key || (info != nil && prev.info != nil && os.SameFile(info, prev.info)) {
				errs = append(errs, fmt.Errorf("%s is the same file as %s; %s", out.what, prev.out.what, out.fix))
				break
			}
		}
		done = append(done, seen{out, key, info})
	}
	return errors.Join(errs...)
}

// rereadable reports whether the input can be read twice: a regular file
// (a missing one is reported when it is opened), not stdin or a pipe.
func rereadable(input string) bool {
	if input == "-" {
		return false
	}
	st, err := os.Stat(input)
	return err != nil || st.Mode().IsRegular()
}

// pathKey names path's file independently of how it is spelled: absolute,
// with its directory's symbolic links resolved when the directory exists.
func pathKey(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		return filepath.Clean(path)
	}
	dir, base := filepath.Split(abs)
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		return filepath.Join(real, base)
	}
	return abs
}

func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return "mode " + m.String()
}

func pathErrCause(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
