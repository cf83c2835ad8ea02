package measure

import (
	"os"
	"testing"
)

func TestGroupThousands(t *testing.T) {
	for in, want := range map[string]string{
		"0": "0", "999": "999", "1000": "1,000", "-1234567": "-1,234,567", "226441": "226,441", "1234.5": "1,234.5",
	} {
		if got := GroupThousands(in); got != want {
			t.Errorf("GroupThousands(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMemKiBOfThisProcess(t *testing.T) {
	rss, hwm := MemKiB(os.Getpid())
	if rss <= 0 || hwm < rss {
		t.Errorf("MemKiB = %d, %d; want 0 < rss <= hwm", rss, hwm)
	}
	if rss, hwm := MemKiB(-1); rss != 0 || hwm != 0 {
		t.Errorf("MemKiB(-1) = %d, %d, want 0, 0", rss, hwm)
	}
}
