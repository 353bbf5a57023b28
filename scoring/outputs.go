package scoring

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// stagedOutputs are the files of one run (mastery, trajectory, rejects,
// states), each written under a temporary name next to its destination. None
// replaces anything until commit, which runs only after every one of them is
// complete and closed, and then moves them all into place or none: a run
// never leaves the previous run's files mixed with its own.
type stagedOutputs struct {
	files []stagedFile
	done  bool
}

type stagedFile struct {
	tmp, path string
	what      string // how the user names it, for messages
}

// stage reserves a temporary name for path in its directory and returns it;
// the caller writes the whole file there. Creating it up front makes a
// directory that cannot be written fail before any work.
func (s *stagedOutputs) stage(path, what string) (string, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".*.partial")
	if err != nil {
		return "", fmt.Errorf("cannot create %s: %w (check that its directory exists and is writable)", what, pathErrCause(err))
	}
	// CreateTemp makes the file private; results are meant to be shared.
	err = errors.Join(f.Chmod(0o644), f.Close())
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("cannot create %s: %w", what, pathErrCause(err))
	}
	s.files = append(s.files, stagedFile{tmp: f.Name(), path: path, what: what})
	return f.Name(), nil
}

// discard removes every temporary file; the previous outputs stay as they
// were. It does nothing after commit.
func (s *stagedOutputs) discard() {
	if s.done {
		return
	}
	s.done = true
	for _, f := range s.files {
		os.Remove(f.tmp)
	}
}

// commit moves every staged file into place. Each destination that exists
// is first hard-linked to a backup name, so that when a rename fails midway
// (the destination turned into a directory, the disk was unmounted) the
// files already moved are put back and the previous run's set is whole
// again. Where the file system has no hard links the backup is skipped and
// only the renames' own atomicity remains.
func (s *stagedOutputs) commit() error {
	if s.done {
		return errors.New("outputs already committed or discarded")
	}
	s.done = true
	backups := make([]string, len(s.files))
	defer func() {
		for _, b := range backups {
			if b != "" {
				os.Remove(b)
			}
		}
	}()
	existed := make([]bool, len(s.files))
	for i, f := range s.files {
		if _, err := os.Lstat(f.path); err != nil {
			continue
		}
		existed[i] = true
		b := f.tmp + ".previous"
		if os.Link(f.path, b) == nil {
			backups[i] = b
		}
	}
	for i, f := range s.files {
		err := os.Rename(f.tmp, f.path)
		if err == nil {
			continue
		}
		var kept []string
		for j := i - 1; j >= 0; j-- {
			prev := s.files[j]
			switch {
			case backups[j] != "":
				if os.Rename(backups[j], prev.path) == nil {
					backups[j] = ""
					continue
				}
				kept = append(kept, prev.path)
			case !existed[j]:
				os.Remove(prev.path) // there was no previous file
			default:
				kept = append(kept, prev.path)
			}
		}
		for _, rest := range s.files[i:] {
			os.Remove(rest.tmp)
		}
		msg := "no output was replaced: the previous ones are as they were"
		if len(kept) > 0 {
			msg = "the previous " + strings.Join(kept, ", ") + " could not be put back and hold this run's results; the other outputs are the previous run's"
		}
		return fmt.Errorf("cannot move the finished %s into place: %w; %s; check %s and rerun", f.what, pathErrCause(err), msg, f.path)
	}
	return nil
}
