package deploytest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/vomosync/vomosync/pkg/messaging"
)

var natsUsers = []string{"poller", "processor", "reconciler", "console", "syncctl", "sys"}

// TestNATSProductionConfigParses loads the cluster node config as a server
// would (with its include), so a syntax or option error fails here.
func TestNATSProductionConfigParses(t *testing.T) {
	setNATSPasswords(t)
	t.Setenv("SERVER_NAME", "nats-0")
	opts, err := server.ProcessConfigFile(filepath.Join(repoRoot(t), "deployments/nats/nats-server.conf"))
	require.NoError(t, err)
	require.True(t, opts.JetStream)
	require.Equal(t, "vomosync", opts.Cluster.Name)
	require.Len(t, opts.Routes, 3, "a 3-node cluster for R3 streams")
	require.Equal(t, 8222, opts.HTTPPort, "KEDA reads consumer lag from the monitoring port")

	// KEDA must look up the consumer in the account the processor uses.
	trig := render(t, "prod").scaledObjects[0].Spec.Triggers[0].Metadata
	require.True(t, strings.HasSuffix(trig["natsServerMonitoringEndpoint"], ":8222"))
	var processorAccount string
	for _, u := range opts.Users {
		if u.Username == "processor" {
			processorAccount = u.Account.Name
		}
	}
	require.Equal(t, processorAccount, trig["account"], "ScaledObject account")
}

// TestNATSPermissions runs a server with deployments/nats/accounts.conf and
// makes each service's JetStream calls as that service's user: what it needs
// works, what it must not do is refused by the server.
func TestNATSPermissions(t *testing.T) {
	url := startAccountsServer(t)
	ctx := t.Context()
	const change = "vomosync.changes.acme.users"
	const dead = "vomosync.dlq.acme.users"

	t.Run("poller", func(t *testing.T) {
		c := connect(t, url, "poller")
		require.NoError(t, messaging.EnsureStreams(ctx, c.js, messaging.Settings{Replicas: 1, DuplicateWindow: 2 * time.Minute}))
		kv, err := messaging.EnsureCheckpointBucket(ctx, c.js, 1)
		require.NoError(t, err)
		_, err = kv.Put(ctx, "acme.users", []byte("2026-01-01T00:00:00Z"))
		require.NoError(t, err)
		_, err = kv.Get(ctx, "acme.users")
		require.NoError(t, err)
		_, err = c.js.Publish(ctx, change, []byte("v1"))
		require.NoError(t, err)

		c.denied(t, dead, func(ctx context.Context) error { _, err := c.js.Publish(ctx, dead, []byte("x")); return err })
		c.denied(t, "$JS.API.STREAM.DELETE.VOMOSYNC_CHANGES", func(ctx context.Context) error {
			return c.js.DeleteStream(ctx, messaging.StreamChanges)
		})
	})

	t.Run("processor", func(t *testing.T) {
		c := connect(t, url, "processor")
		// Its stream check: an update is refused, the lookup works.
		c.denied(t, "$JS.API.STREAM.UPDATE.VOMOSYNC_CHANGES", func(ctx context.Context) error {
			return messaging.EnsureStreams(ctx, c.js, messaging.Settings{Replicas: 1, DuplicateWindow: 2 * time.Minute})
		})
		_, err := c.js.Stream(ctx, messaging.StreamChanges)
		require.NoError(t, err)
		cons, err := c.js.CreateOrUpdateConsumer(ctx, messaging.StreamChanges, jetstream.ConsumerConfig{
			Durable: messaging.ConsumerName, FilterSubject: messaging.ChangesPrefix + ".>",
			AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 4000,
		})
		require.NoError(t, err)
		batch, err := cons.FetchNoWait(10)
		require.NoError(t, err)
		n := 0
		for msg := range batch.Messages() {
			require.NoError(t, msg.DoubleAck(ctx))
			n++
		}
		require.NoError(t, batch.Error())
		require.Equal(t, 1, n, "the poller's event reaches the processor")
		_, err = c.js.Publish(ctx, dead, []byte("poison"))
		require.NoError(t, err)

		c.denied(t, change, func(ctx context.Context) error { _, err := c.js.Publish(ctx, change, []byte("x")); return err })
		c.denied(t, "$JS.API.CONSUMER.CREATE.VOMOSYNC_CHANGES.other", func(ctx context.Context) error {
			_, err := c.js.CreateOrUpdateConsumer(ctx, messaging.StreamChanges, jetstream.ConsumerConfig{Durable: "other"})
			return err
		})
	})

	t.Run("reconciler", func(t *testing.T) {
		c := connect(t, url, "reconciler")
		require.NoError(t, messaging.EnsureStreams(ctx, c.js, messaging.Settings{Replicas: 1, DuplicateWindow: 2 * time.Minute}))
		_, err := c.js.Publish(ctx, change, []byte("gap fill"))
		require.NoError(t, err)
		// Waiting for the processor to apply a repair.
		changes, err := c.js.Stream(ctx, messaging.StreamChanges)
		require.NoError(t, err)
		last, err := changes.GetLastMsgForSubject(ctx, change)
		require.NoError(t, err)
		require.Equal(t, "gap fill", string(last.Data))
		proc, err := changes.Consumer(ctx, messaging.ConsumerName)
		require.NoError(t, err)
		_, err = proc.Info(ctx)
		require.NoError(t, err)
		_, err = c.js.Publish(ctx, dead, []byte("again"))
		require.NoError(t, err)
		dlq, err := c.js.Stream(ctx, messaging.StreamDLQ)
		require.NoError(t, err)
		msg, err := dlq.GetMsg(ctx, 1)
		require.NoError(t, err)
		require.Equal(t, "poison", string(msg.Data))
		cons, err := dlq.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
		require.NoError(t, err)
		_, err = cons.Next(jetstream.FetchMaxWait(2 * time.Second))
		require.NoError(t, err)
		require.NoError(t, dlq.DeleteMsg(ctx, 1))
		kv, err := c.js.KeyValue(ctx, messaging.CheckpointBucket)
		require.NoError(t, err)
		_, err = kv.Get(ctx, "acme.users")
		require.NoError(t, err)

		c.denied(t, "$KV.vomosync_checkpoints.acme.users", func(ctx context.Context) error {
			_, err := kv.Put(ctx, "acme.users", []byte("x"))
			return err
		})
		c.denied(t, "$JS.API.STREAM.PURGE.VOMOSYNC_DLQ", func(ctx context.Context) error { return dlq.Purge(ctx) })
	})

	t.Run("console", func(t *testing.T) {
		c := connect(t, url, "console")
		changes, err := c.js.Stream(ctx, messaging.StreamChanges)
		require.NoError(t, err)
		_, err = changes.Consumer(ctx, messaging.ConsumerName)
		require.NoError(t, err)
		dlq, err := c.js.Stream(ctx, messaging.StreamDLQ)
		require.NoError(t, err)
		_, err = dlq.GetMsg(ctx, 2)
		require.NoError(t, err)
		kv, err := c.js.KeyValue(ctx, messaging.CheckpointBucket)
		require.NoError(t, err)
		_, err = kv.Get(ctx, "acme.users")
		require.NoError(t, err)

		c.denied(t, change, func(ctx context.Context) error { _, err := c.js.Publish(ctx, change, []byte("x")); return err })
		c.denied(t, "$KV.vomosync_checkpoints.acme.users", func(ctx context.Context) error {
			_, err := kv.Put(ctx, "acme.users", []byte("x"))
			return err
		})
		c.denied(t, "$JS.API.STREAM.MSG.DELETE.VOMOSYNC_DLQ", func(ctx context.Context) error { return dlq.DeleteMsg(ctx, 2) })
		c.denied(t, "$JS.API.CONSUMER.MSG.NEXT.VOMOSYNC_CHANGES.processor", func(ctx context.Context) error {
			cons, err := changes.Consumer(ctx, messaging.ConsumerName)
			if err != nil {
				return err
			}
			batch, err := cons.FetchNoWait(1)
			if err != nil {
				return err
			}
			// The reconciler's gap fill is pending: a permitted fetch gets it.
			for range batch.Messages() {
				return nil
			}
			return errors.Join(errors.New("fetched nothing"), batch.Error())
		})
	})

	t.Run("syncctl", func(t *testing.T) {
		c := connect(t, url, "syncctl")
		dlq, err := c.js.Stream(ctx, messaging.StreamDLQ)
		require.NoError(t, err)
		require.NoError(t, dlq.Purge(ctx))
		_, err = c.js.Publish(ctx, change, []byte("replay"))
		require.NoError(t, err)
	})
}

// startAccountsServer runs accounts.conf on a random loopback port.
func startAccountsServer(t *testing.T) string {
	t.Helper()
	setNATSPasswords(t)
	dir := t.TempDir()
	accounts, err := os.ReadFile(filepath.Join(repoRoot(t), "deployments/nats/accounts.conf"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "accounts.conf"), accounts, 0o600))
	conf := "listen: 127.0.0.1:-1\njetstream { store_dir: \"" + filepath.Join(dir, "js") + "\" }\ninclude ./accounts.conf\n"
	path := filepath.Join(dir, "server.conf")
	require.NoError(t, os.WriteFile(path, []byte(conf), 0o600))
	opts, err := server.ProcessConfigFile(path)
	require.NoError(t, err)
	opts.NoSigs = true
	srv, err := server.NewServer(opts)
	require.NoError(t, err)
	go srv.Start()
	t.Cleanup(srv.Shutdown)
	require.True(t, srv.ReadyForConnections(10*time.Second), "nats server not ready")
	return srv.ClientURL()
}

// setNATSPasswords gives each user the password "<user>-test".
func setNATSPasswords(t *testing.T) {
	for _, u := range natsUsers {
		t.Setenv("NATS_"+strings.ToUpper(u)+"_PASSWORD", u+"-test")
	}
}

type client struct {
	js jetstream.JetStream

	mu     sync.Mutex
	errors []error
}

func connect(t *testing.T, url, user string) *client {
	t.Helper()
	c := &client{}
	nc, err := nats.Connect(url, nats.UserInfo(user, user+"-test"), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		c.mu.Lock()
		c.errors = append(c.errors, err)
		c.mu.Unlock()
	}))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	c.js, err = jetstream.New(nc)
	require.NoError(t, err)
	return c
}

// denied runs op and requires it to fail with the server reporting a
// permissions violation on subject (the client may only see a timeout).
func (c *client) denied(t *testing.T, subject string, op func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	require.Error(t, op(ctx), "expected %s to be refused", subject)
	require.Eventually(t, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, err := range c.errors {
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), subject) {
				return true
			}
		}
		return false
	}, 5*time.Second, 20*time.Millisecond, "no permissions violation reported for %s", subject)
}
