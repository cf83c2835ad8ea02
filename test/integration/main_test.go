package integration

import (
	"testing"

	"go.uber.org/goleak"
)

// Every engine, reader and ticker a test starts must be gone when it ends.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
