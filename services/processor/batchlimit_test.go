package processor

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestBatchLimitAdaptsToLatency(t *testing.T) {
	t.Parallel()
	l := batchLimit{max: 500, n: 500, target: time.Second}
	l.observe(500, 3*time.Second)
	require.Equal(t, 250, l.current(), "slow batch halves")
	l.observe(250, 3*time.Second)
	l.observe(125, 3*time.Second)
	l.observe(62, 3*time.Second)
	l.observe(31, 3*time.Second)
	l.observe(15, 3*time.Second)
	require.Equal(t, 10, l.current(), "never below 10")
	l.observe(3, 10*time.Millisecond)
	require.Equal(t, 10, l.current(), "a small batch says nothing about a full one")
	for range 30 {
		l.observe(l.current(), 100*time.Millisecond)
	}
	require.Equal(t, 500, l.current(), "fast full batches grow back to the maximum")
}
