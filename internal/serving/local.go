package serving

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"outpost.dev/outpost/api/v1alpha1"
)

// LocalModel describes a model held in local files, for a server with no
// agent and no hub: path is an ONNX file, or a folder as 'outpost model
// push' takes one (nested folders, other files beside the model), whose
// one .onnx file, or model.onnx among several, is served. name is the name
// requests use, version the version answers give. Its Digest hashes the
// files' paths and contents, so a Sync after they changed loads them anew.
// A path that holds no ONNX model is an error here, before anything serves.
func LocalModel(name, version, path string, s v1alpha1.Serving) (Model, error) {
	files, err := localFiles(path)
	if err != nil {
		return Model{}, fmt.Errorf("model %s: %w", name, err)
	}
	if _, err := modelFile(files); err != nil {
		return Model{}, fmt.Errorf("model %s: %s: %w", name, path, err)
	}
	d, err := filesDigest(files)
	if err != nil {
		return Model{}, fmt.Errorf("model %s: %w", name, err)
	}
	return Model{Deployment: name, Model: name, Version: version, Digest: d, Files: files, Serving: s}, nil
}

// localFiles maps the slash path of each regular file under path (a file
// or a folder) to its path on disk. Links are followed.
func localFiles(path string) (map[string]string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode().IsRegular() {
		return map[string]string{filepath.Base(path): path}, nil
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s is neither a regular file nor a folder", path)
	}
	files := map[string]string{}
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(path, p)
		if err != nil {
			return err
		}
		files[filepath.ToSlash(rel)] = p
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s holds no files", path)
	}
	return files, nil
}

// filesDigest hashes the paths and contents of files, in path order.
func filesDigest(files map[string]string) (string, error) {
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	h := sha256.New()
	for _, p := range paths {
		f, err := os.Open(files[p])
		if err != nil {
			return "", err
		}
		fi, err := f.Stat()
		if err == nil {
			// Each file's path and size first: no two sets of files hash alike.
			fmt.Fprintf(h, "%s\x00%d\x00", p, fi.Size())
			_, err = io.Copy(h, f)
		}
		f.Close()
		if err != nil {
			return "", fmt.Errorf("read %s: %w", files[p], err)
		}
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}
