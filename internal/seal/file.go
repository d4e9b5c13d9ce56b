package seal

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// FileProvider is the provider name of the file root of trust: root keys
// read from files the manager is given (a mounted Secret, a hostPath on a
// control-plane node), never from the API server it serves.
const FileProvider = "file"

// LoadFile returns the file sealer. path is either one file, the root key
// version 1, or a directory of files named root-key-v<N> (the layout of the
// local root key Secret's data, so that Secret mounted as a volume works
// as is), where the highest N seals and every N unseals. Each file holds
// exactly RootKeySize raw bytes (head -c 32 /dev/urandom). Nothing is ever
// created: a missing or malformed file is an error that names it.
func LoadFile(path string) (*AESGCM, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("root key file: %w", err)
	}
	files := map[uint32]string{}
	if info.IsDir() {
		entries, err := os.ReadDir(path)
		if err != nil {
			return nil, fmt.Errorf("root key directory: %w", err)
		}
		for _, e := range entries {
			v, ok := strings.CutPrefix(e.Name(), rootKeyDataPrefix)
			if !ok {
				continue
			}
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil || n == 0 {
				return nil, fmt.Errorf("root key directory %s: file %q is not %s<N> with N a positive number", path, e.Name(), rootKeyDataPrefix)
			}
			if prev, ok := files[uint32(n)]; ok {
				return nil, fmt.Errorf("root key directory %s: files %q and %q are both root key version %d", path, filepath.Base(prev), e.Name(), n)
			}
			files[uint32(n)] = filepath.Join(path, e.Name())
		}
		if len(files) == 0 {
			return nil, fmt.Errorf("root key directory %s holds no %s<N> file: write one with `head -c %d /dev/urandom > %s`",
				path, rootKeyDataPrefix, RootKeySize, filepath.Join(path, rootKeyDataPrefix+"1"))
		}
	} else {
		files[1] = path
	}
	keys := make(map[uint32][]byte, len(files))
	var current uint32
	for v, f := range files {
		k, err := os.ReadFile(f)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("root key file %s: %w", f, err)
		}
		if err != nil {
			return nil, fmt.Errorf("read root key file: %w", err)
		}
		if len(k) != RootKeySize {
			return nil, fmt.Errorf("root key file %s is %d bytes, want exactly %d raw bytes (not base64 or hex; `head -c %d /dev/urandom` makes one)",
				f, len(k), RootKeySize, RootKeySize)
		}
		keys[v] = k
		current = max(current, v)
	}
	return NewAESGCM(FileProvider, keys, current)
}
