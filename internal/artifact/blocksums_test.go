package artifact

import (
	"bytes"
	"crypto/sha256"
	"strings"
	"testing"
)

func TestBlockSums(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 200) // 3,200 bytes
	tests := []struct {
		name    string
		n       int64
		block   int
		blocks  int
		wantErr string
	}{
		{"whole blocks", 3072, 1024, 3, ""},
		{"short last block", 3200, 1024, 4, ""},
		{"one short block", 100, 512, 1, ""},
		{"empty", 0, 512, 0, ""},
		{"block too small", 100, 256, 0, "block size 256"},
		{"block too large", 100, 2 << 20, 0, "block size"},
		{"reader too short", 4000, 1024, 0, "unexpected EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := BlockSums(bytes.NewReader(data), tt.n, tt.block)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tt.blocks*BlockSumSize {
				t.Fatalf("%d bytes of sums, want %d", len(got), tt.blocks*BlockSumSize)
			}
			for i := 0; i < tt.blocks; i++ {
				end := min(int64((i+1)*tt.block), tt.n)
				want := sha256.Sum256(data[i*tt.block : end])
				if !bytes.Equal(got[i*BlockSumSize:(i+1)*BlockSumSize], want[:BlockSumSize]) {
					t.Errorf("block %d: sum %x, want %x", i, got[i*BlockSumSize:(i+1)*BlockSumSize], want[:BlockSumSize])
				}
			}
			if mem := AppendBlockSums(nil, data[:tt.n], tt.block); !bytes.Equal(mem, got) {
				t.Errorf("AppendBlockSums differs from BlockSums")
			}
		})
	}
}
