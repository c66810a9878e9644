package events

import (
	"encoding/base64"
	"errors"
	"fmt"
	"time"
)

// Hand-written decoders of every payload, for decoder (jsondec.go). Each
// mirrors its struct's json tags exactly; FuzzDecoderAgreesWithEncodingJSON
// holds them to encoding/json's reading of the same bytes.

// payloadDecoder is implemented by a pointer to every payload type.
type payloadDecoder interface {
	decodeFrom(d *decoder) error
}

// decodeEmpty reads the {} of a payload without fields.
func decodeEmpty(d *decoder) error {
	return d.object(func(name []byte) error { return unknown(name) })
}

func (*TenantSuspendedV1) decodeFrom(d *decoder) error { return decodeEmpty(d) }
func (*TenantResumedV1) decodeFrom(d *decoder) error   { return decodeEmpty(d) }
func (*UserDisabledV1) decodeFrom(d *decoder) error    { return decodeEmpty(d) }
func (*UserEnabledV1) decodeFrom(d *decoder) error     { return decodeEmpty(d) }
func (*UserDeletedV1) decodeFrom(d *decoder) error     { return decodeEmpty(d) }
func (*KeySuspendedV1) decodeFrom(d *decoder) error    { return decodeEmpty(d) }
func (*KeyResumedV1) decodeFrom(d *decoder) error      { return decodeEmpty(d) }
func (*KeyRevokedV1) decodeFrom(d *decoder) error      { return decodeEmpty(d) }
func (*APIRetiredV1) decodeFrom(d *decoder) error      { return decodeEmpty(d) }
func (*WebhookDisabledV1) decodeFrom(d *decoder) error { return decodeEmpty(d) }
func (*WebhookEnabledV1) decodeFrom(d *decoder) error  { return decodeEmpty(d) }
func (*WebhookDeletedV1) decodeFrom(d *decoder) error  { return decodeEmpty(d) }
func (*PolicyRetiredV1) decodeFrom(d *decoder) error   { return decodeEmpty(d) }

// decodeWebhook reads an endpoint's url and types, and (created) its
// secret id.
func decodeWebhook(d *decoder, u *string, types *[]string, secretID *string) error {
	var seen uint32
	return d.object(func(name []byte) (err error) {
		switch string(name) {
		case "url":
			if err = once(&seen, 0, name); err == nil {
				*u, err = d.str()
			}
		case "types":
			if err = once(&seen, 1, name); err == nil {
				*types, err = d.strings()
			}
		case "secret_id":
			if secretID == nil {
				return unknown(name)
			}
			if err = once(&seen, 2, name); err == nil {
				*secretID, err = d.str()
			}
		default:
			err = unknown(name)
		}
		return err
	})
}

func (p *WebhookCreatedV1) decodeFrom(d *decoder) error {
	return decodeWebhook(d, &p.URL, &p.Types, &p.SecretID)
}
func (p *WebhookUpdatedV1) decodeFrom(d *decoder) error {
	return decodeWebhook(d, &p.URL, &p.Types, nil)
}

func (p *SignerAddedV1) decodeFrom(d *decoder) error {
	var seen uint32
	return d.object(func(name []byte) (err error) {
		switch string(name) {
		case "id":
			if err = once(&seen, 0, name); err == nil {
				p.ID, err = d.str()
			}
		case "public_key":
			if err = once(&seen, 1, name); err == nil {
				var s string
				if s, err = d.str(); err == nil {
					p.PublicKey, err = base64.StdEncoding.DecodeString(s)
				}
			}
		case "name":
			if err = once(&seen, 2, name); err == nil {
				p.Name, err = d.str()
			}
		case "role":
			if err = once(&seen, 3, name); err == nil {
				p.Role, err = d.str()
			}
		default:
			err = unknown(name)
		}
		return err
	})
}

func (p *SignerRemovedV1) decodeFrom(d *decoder) error {
	var seen uint32
	return d.object(func(name []byte) (err error) {
		if string(name) != "id" {
			return unknown(name)
		}
		if err = once(&seen, 0, name); err == nil {
			p.ID, err = d.str()
		}
		return err
	})
}

func (p *WebhookSecretRotatedV1) decodeFrom(d *decoder) error {
	var seen uint32
	return d.object(func(name []byte) (err error) {
		switch string(name) {
		case "secret_id":
			if err = once(&seen, 0, name); err == nil {
				p.SecretID, err = d.str()
			}
		case "previous_until":
			if err = once(&seen, 1, name); err == nil {
				p.PreviousUntil, err = d.time()
			}
		default:
			err = unknown(name)
		}
		return err
	})
}

// decodeName reads a payload whose only member is "name".
func decodeName(d *decoder, into *string) error {
	var seen uint32
	return d.object(func(name []byte) (err error) {
		if string(name) != "name" {
			return unknown(name)
		}
		if err = once(&seen, 0, name); err == nil {
			*into, err = d.str()
		}
		return err
	})
}

func (p *TenantCreatedV1) decodeFrom(d *decoder) error { return decodeName(d, &p.Name) }
func (p *UserCreatedV1) decodeFrom(d *decoder) error   { return decodeName(d, &p.Name) }

func (p *UserKeysRevokedBeforeV1) decodeFrom(d *decoder) error   { return decodeBefore(d, &p.Before) }
func (p *TenantKeysRevokedBeforeV1) decodeFrom(d *decoder) error { return decodeBefore(d, &p.Before) }

func (p *TenantNoticesConfiguredV1) decodeFrom(d *decoder) error {
	var seen uint32
	return d.object(func(name []byte) (err error) {
		switch string(name) {
		case "expiry_before":
			if err = once(&seen, 0, name); err == nil {
				p.ExpiryBefore, err = d.strings()
			}
		case "unused_after":
			if err = once(&seen, 1, name); err == nil {
				p.UnusedAfter, err = d.str()
			}
		default:
			err = unknown(name)
		}
		return err
	})
}

// decodeBefore reads {"before": time}, the payload of the revoke-before
// events.
func decodeBefore(d *decoder, before *time.Time) error {
	var seen uint32
	return d.object(func(name []byte) (err error) {
		if string(name) != "before" {
			return unknown(name)
		}
		if err = once(&seen, 0, name); err == nil {
			*before, err = d.time()
		}
		return err
	})
}

// keyAttrs points at the members key.issued and key.updated share.
type keyAttrs struct {
	name      *string
	scopes    *[]string
	expiresAt **time.Time
	rateLimit **RateLimit
	metadata  *map[string]string
	policies  *[]string
}

// member decodes one shared member, using bits 0-4 and 9 of seen; ok is false for
// a member that is not shared.
func (k keyAttrs) member(d *decoder, name []byte, seen *uint32) (ok bool, err error) {
	switch string(name) {
	case "name":
		if err = once(seen, 0, name); err == nil {
			*k.name, err = d.str()
		}
	case "scopes":
		if err = once(seen, 1, name); err == nil {
			*k.scopes, err = d.strings()
		}
	case "expires_at":
		if err = once(seen, 2, name); err == nil {
			*k.expiresAt, err = d.timePtr()
		}
	case "rate_limit":
		if err = once(seen, 3, name); err == nil {
			*k.rateLimit, err = d.rateLimit()
		}
	case "metadata":
		if err = once(seen, 4, name); err == nil {
			*k.metadata, err = d.stringMap()
		}
	case "policies":
		if err = once(seen, 9, name); err == nil {
			*k.policies, err = d.strings()
		}
	default:
		return false, nil
	}
	return true, err
}

func (p *KeyIssuedV1) decodeFrom(d *decoder) error {
	var seen uint32
	shared := keyAttrs{&p.Name, &p.Scopes, &p.ExpiresAt, &p.RateLimit, &p.Metadata, &p.Policies}
	return d.object(func(name []byte) (err error) {
		if ok, err := shared.member(d, name, &seen); ok {
			return err
		}
		switch string(name) {
		case "secret_sha256":
			if err = once(&seen, 5, name); err == nil {
				err = d.text(&p.SecretHash)
			}
		case "hint":
			if err = once(&seen, 6, name); err == nil {
				p.Hint, err = d.str()
			}
		case "not_before":
			if err = once(&seen, 7, name); err == nil {
				p.NotBefore, err = d.timePtr()
			}
		case "rotated_from":
			if err = once(&seen, 8, name); err == nil {
				p.RotatedFrom, err = d.str()
			}
		default:
			err = unknown(name)
		}
		return err
	})
}

func (p *KeyUpdatedV1) decodeFrom(d *decoder) error {
	var seen uint32
	shared := keyAttrs{&p.Name, &p.Scopes, &p.ExpiresAt, &p.RateLimit, &p.Metadata, &p.Policies}
	return d.object(func(name []byte) error {
		if ok, err := shared.member(d, name, &seen); ok {
			return err
		}
		return unknown(name)
	})
}

func (p *KeyRotatedV1) decodeFrom(d *decoder) error {
	var seen uint32
	return d.object(func(name []byte) (err error) {
		switch string(name) {
		case "successor":
			if err = once(&seen, 0, name); err == nil {
				p.Successor, err = d.str()
			}
		case "grace_until":
			if err = once(&seen, 1, name); err == nil {
				p.GraceUntil, err = d.time()
			}
		default:
			err = unknown(name)
		}
		return err
	})
}

// decodeAPI reads the members APICreatedV1 and APIUpdatedV1 share.
func decodeAPI(d *decoder, name *string, prefix *string, upstreams, scopes *[]string, rl **RateLimit) error {
	var seen uint32
	return d.object(func(member []byte) (err error) {
		switch string(member) {
		case "name":
			if err = once(&seen, 0, member); err == nil {
				*name, err = d.str()
			}
		case "path_prefix":
			if err = once(&seen, 1, member); err == nil {
				*prefix, err = d.str()
			}
		case "upstreams":
			if err = once(&seen, 2, member); err == nil {
				*upstreams, err = d.strings()
			}
		case "scopes":
			if err = once(&seen, 3, member); err == nil {
				*scopes, err = d.strings()
			}
		case "rate_limit":
			if err = once(&seen, 4, member); err == nil {
				*rl, err = d.rateLimit()
			}
		default:
			err = unknown(member)
		}
		return err
	})
}

func (p *APICreatedV1) decodeFrom(d *decoder) error {
	return decodeAPI(d, &p.Name, &p.PathPrefix, &p.Upstreams, &p.Scopes, &p.RateLimit)
}

func (p *APIUpdatedV1) decodeFrom(d *decoder) error {
	return decodeAPI(d, &p.Name, &p.PathPrefix, &p.Upstreams, &p.Scopes, &p.RateLimit)
}

// decodePolicy reads the members of PolicyCreatedV1 and PolicyUpdatedV1.
func decodePolicy(d *decoder, name *string, scopes *[]string, rl **RateLimit, maxTTL *string, apis *[]string) error {
	var seen uint32
	return d.object(func(member []byte) (err error) {
		switch string(member) {
		case "name":
			if err = once(&seen, 0, member); err == nil {
				*name, err = d.str()
			}
		case "scopes":
			if err = once(&seen, 1, member); err == nil {
				*scopes, err = d.strings()
			}
		case "rate_limit":
			if err = once(&seen, 2, member); err == nil {
				*rl, err = d.rateLimit()
			}
		case "max_ttl":
			if err = once(&seen, 3, member); err == nil {
				*maxTTL, err = d.str()
			}
		case "apis":
			if err = once(&seen, 4, member); err == nil {
				*apis, err = d.strings()
			}
		default:
			err = unknown(member)
		}
		return err
	})
}

func (p *PolicyCreatedV1) decodeFrom(d *decoder) error {
	return decodePolicy(d, &p.Name, &p.Scopes, &p.RateLimit, &p.MaxTTL, &p.APIs)
}

func (p *PolicyUpdatedV1) decodeFrom(d *decoder) error {
	return decodePolicy(d, &p.Name, &p.Scopes, &p.RateLimit, &p.MaxTTL, &p.APIs)
}

func (p *APIDeprecatedV1) decodeFrom(d *decoder) error {
	var seen uint32
	return d.object(func(name []byte) (err error) {
		if string(name) != "sunset" {
			return unknown(name)
		}
		if err = once(&seen, 0, name); err == nil {
			p.Sunset, err = d.time()
		}
		return err
	})
}

// decodeEnvelope reads the envelope into w. When type and version precede
// data (as Encode writes them) and current says the version needs no
// upcasting, the payload is decoded in place into w.Data; otherwise it is
// kept raw in w.rawData for Decode to upcast and decode.
func decodeEnvelope(b []byte, w *envelope, current func(Type) (Payload, int)) error {
	d := decoder{b: b}
	var seen uint32
	err := d.object(func(name []byte) (err error) {
		switch string(name) {
		case "id":
			if err = once(&seen, 0, name); err == nil {
				w.ID, err = d.idString()
			}
		case "type":
			if err = once(&seen, 1, name); err == nil {
				var t []byte
				if t, err = d.rawString(); err == nil {
					w.Type = internType(t)
				}
			}
		case "v":
			if err = once(&seen, 2, name); err == nil {
				w.Version, err = d.int()
			}
		case "tenant":
			if err = once(&seen, 3, name); err == nil {
				w.Tenant, err = d.idString()
			}
		case "aggregate":
			if err = once(&seen, 4, name); err == nil {
				err = d.aggregate(&w.Aggregate)
			}
		case "actor":
			if err = once(&seen, 5, name); err == nil {
				w.Actor, err = d.str()
			}
		case "reason":
			if err = once(&seen, 6, name); err == nil {
				w.Reason, err = d.str()
			}
		case "occurred_at":
			if err = once(&seen, 7, name); err == nil {
				w.OccurredAt, err = d.time()
			}
		case "command_id":
			if err = once(&seen, 8, name); err == nil {
				w.CommandID, err = d.idString()
			}
		case "correlation_id":
			if err = once(&seen, 9, name); err == nil {
				w.CorrelationID, err = d.idString()
			}
		case "prev_hash":
			if err = once(&seen, 10, name); err == nil {
				w.hasPrev = true
				err = d.text(&w.PrevHash)
			}
		case "data":
			if err = once(&seen, 11, name); err == nil {
				if d.peek() != '{' {
					return errors.New("data must be an object")
				}
				if seen&0b110 == 0b110 { // type and version known
					if p, v := current(w.Type); p != nil && v == w.Version {
						if err = p.(payloadDecoder).decodeFrom(&d); err != nil {
							return fmt.Errorf("%s data: %w", w.Type, err)
						}
						w.Data = p
						return nil
					}
				}
				w.rawData, err = d.skip()
			}
		default:
			err = unknown(name)
		}
		return err
	})
	if err != nil {
		return err
	}
	return d.end()
}

func (d *decoder) aggregate(a *Aggregate) error {
	var seen uint32
	return d.object(func(name []byte) (err error) {
		switch string(name) {
		case "kind":
			if err = once(&seen, 0, name); err == nil {
				var k []byte
				if k, err = d.rawString(); err == nil {
					a.Kind = internKind(k)
				}
			}
		case "id":
			if err = once(&seen, 1, name); err == nil {
				a.ID, err = d.idString()
			}
		case "user":
			if err = once(&seen, 2, name); err == nil {
				a.User, err = d.idString()
			}
		default:
			err = unknown(name)
		}
		return err
	})
}

// decodePayload reads data into the payload p.
func decodePayload(data []byte, p Payload) error {
	pd, ok := p.(payloadDecoder)
	if !ok {
		return errors.New("payload has no decoder")
	}
	d := decoder{b: data}
	if err := pd.decodeFrom(&d); err != nil {
		return err
	}
	return d.end()
}

// internType returns the constant for a known type name without allocating;
// an unknown name is copied (and refused later).
func internType(b []byte) Type {
	for _, t := range Types() {
		if string(t) == string(b) {
			return t
		}
	}
	return Type(b)
}

func internKind(b []byte) Kind {
	for _, k := range []Kind{KindTenant, KindUser, KindKey, KindAPI, KindWebhook, KindTrust, KindPolicy} {
		if string(k) == string(b) {
			return k
		}
	}
	return Kind(b)
}
