package app

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/store"
)

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var nf natsFlags
	var lf logFlags
	nf.register(fs, "control")
	adminListen := fs.String("admin-listen", DefaultAdminListen, "admin API address")
	replicas := fs.Int("replicas", 1, "replicas of the streams this node creates (3 on a cluster)")
	rootKey := fs.String("root-key", "./root.key", "file holding the root key (created, mode 0600, if missing; give every control node the same)")
	dup := fs.Duration("dup-window", store.DefaultDuplicates, "idempotency window of the event stream")
	lf.register(fs)
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if err := nf.validate(); err != nil {
		return err
	}
	if _, _, err := net.SplitHostPort(*adminListen); err != nil {
		return usageError{fmt.Errorf("-admin-listen %q: %w", *adminListen, err)}
	}
	if *replicas < 1 || *replicas > 5 {
		return usageError{fmt.Errorf("-replicas must be 1 to 5")}
	}
	rootHash, _, err := loadOrCreateRootKey(*rootKey)
	if err != nil {
		return err
	}
	log, nc, st, err := connectRole(ctx, &nf, &lf, stderr, store.Config{Replicas: *replicas, Duplicates: *dup, CreateIfMissing: true})
	if err != nil {
		return err
	}
	defer closeConn(nc)
	admin, err := startAdmin(ctx, st, *adminListen, *replicas, rootHash, 0, log)
	if err != nil {
		return err
	}
	defer admin.Close()
	log.Info("control node connected; event stream ensured", "nats", nc.ConnectedUrlRedacted(), "replicas", *replicas, "admin", admin.URL())
	select {
	case <-ctx.Done():
		return nil
	case err := <-admin.errc:
		return err
	}
}

func runGateway(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	var nf natsFlags
	var lf logFlags
	nf.register(fs, "gateway")
	listen := fs.String("gateway-listen", DefaultGatewayListen, "gateway address")
	tenants := fs.String("tenants", "", "serve only these tenants, comma-separated (default: all)")
	staleness := fs.Duration("max-staleness", 30*time.Second, "deny with STALE once the read model cannot be confirmed current for this long")
	lf.register(fs)
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if err := nf.validate(); err != nil {
		return err
	}
	if _, _, err := net.SplitHostPort(*listen); err != nil {
		return usageError{fmt.Errorf("-gateway-listen %q: %w", *listen, err)}
	}
	filters, err := tenantFilters(*tenants)
	if err != nil {
		return err
	}
	if *staleness <= 0 {
		return usageError{fmt.Errorf("-max-staleness must be positive")}
	}
	// A gateway never creates the stream; it refuses to run on a weak one.
	log, nc, _, err := connectRole(ctx, &nf, &lf, stderr, store.Config{})
	if err != nil {
		return err
	}
	defer closeConn(nc)
	log.Info("gateway connected; event stream verified", "nats", nc.ConnectedUrlRedacted(), "filters", filters)
	<-ctx.Done()
	return nil
}

// connectRole starts a role that reaches NATS over the network: its logger,
// its connection, and the event store opened (and checked) with cfg.
func connectRole(ctx context.Context, nf *natsFlags, lf *logFlags, stderr io.Writer, cfg store.Config) (*slog.Logger, *nats.Conn, *store.JetStream, error) {
	log, err := lf.logger(stderr)
	if err != nil {
		return nil, nil, nil, err
	}
	nc, err := nf.connect(ctx, log)
	if err != nil {
		return nil, nil, nil, err
	}
	st, err := store.OpenJetStream(ctx, nc, cfg)
	if err != nil {
		closeConn(nc)
		return nil, nil, nil, err
	}
	return log, nc, st, nil
}

// tenantFilters turns -tenants a,b into subject filters, validating each id.
func tenantFilters(list string) ([]string, error) {
	if strings.TrimSpace(list) == "" {
		return []string{events.AllSubjects}, nil
	}
	var fs []string
	for _, t := range strings.Split(list, ",") {
		f, err := events.TenantFilter(strings.TrimSpace(t))
		if err != nil {
			return nil, usageError{fmt.Errorf("-tenants: %q is not a tenant id", t)}
		}
		fs = append(fs, f)
	}
	return fs, nil
}
