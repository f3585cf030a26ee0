package developer

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// TOTP parameters: RFC 6238 defaults every authenticator app supports.
const (
	totpPeriod = 30
	// RecoveryCodes is how many recovery codes an enrolment yields.
	RecoveryCodes = 10
)

// Enrollment is a TOTP secret being enrolled: shown to the developer once
// (as an otpauth:// URI, a QR code of it, and the base32 secret).
type Enrollment struct {
	// Secret is the base32 secret.
	Secret string `json:"secret"`
	// URI is the otpauth:// key URI.
	URI string `json:"otpauth_uri"`
	// Key is the parsed key (its Image method draws the QR code).
	Key *otp.Key `json:"-"`
}

// EnrollTOTP starts a TOTP enrolment: a new secret, pending until
// ConfirmTOTP proves the developer's app has it. An enrolled factor stays
// in force until then.
func (s *Service) EnrollTOTP(ctx context.Context, devID string) (*Enrollment, error) {
	d, err := s.Developer(ctx, devID)
	if err != nil {
		return nil, err
	}
	k, err := totp.Generate(totp.GenerateOpts{Issuer: s.issuer, AccountName: d.Email, Period: totpPeriod})
	if err != nil {
		return nil, err
	}
	sealed, err := s.seal(k.Secret())
	if err != nil {
		return nil, err
	}
	if _, err := s.w.ExecContext(ctx, s.rebind("UPDATE dev_developer SET totp_pending = ? WHERE id = ?"), sealed, devID); err != nil {
		return nil, err
	}
	return &Enrollment{Secret: k.Secret(), URI: k.URL(), Key: k}, nil
}

// ConfirmTOTP completes an enrolment with a current code from the
// developer's app, and returns new recovery codes (shown once; any old
// ones are void).
func (s *Service) ConfirmTOTP(ctx context.Context, devID, code string) ([]string, error) {
	d, err := s.Developer(ctx, devID)
	if err != nil {
		return nil, err
	}
	if d.totpPending == "" {
		return nil, invalid("start the enrolment first")
	}
	secret, err := s.open(d.totpPending)
	if err != nil {
		return nil, err
	}
	step, ok := s.checkCode(secret, code, 0)
	if !ok {
		return nil, invalid("the code is not valid; check the time on your device and try again")
	}
	codes := make([]string, RecoveryCodes)
	err = s.tx(ctx, func(tx txish) error {
		if _, err := tx.ExecContext(ctx, s.rebind("UPDATE dev_developer SET totp_secret = totp_pending, totp_pending = '', totp_step = ? WHERE id = ?"), step, devID); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, s.rebind("DELETE FROM dev_recovery_code WHERE developer_id = ?"), devID); err != nil {
			return err
		}
		for i := range codes {
			codes[i] = recoveryCode()
			if _, err := tx.ExecContext(ctx, s.rebind("INSERT INTO dev_recovery_code (developer_id, code_hash) VALUES (?, ?)"), devID, hashToken(normalizeRecovery(codes[i]))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return codes, nil
}

// DisableTOTP removes the second factor after checking the password.
func (s *Service) DisableTOTP(ctx context.Context, devID, password string) error {
	d, err := s.Developer(ctx, devID)
	if err != nil {
		return err
	}
	ok, err := s.verify(ctx, d.passwordHash, password)
	if err != nil {
		return err
	}
	if !ok {
		return ErrBadLogin
	}
	return s.tx(ctx, func(tx txish) error {
		if _, err := tx.ExecContext(ctx, s.rebind("UPDATE dev_developer SET totp_secret = '', totp_pending = '', totp_step = 0 WHERE id = ?"), devID); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, s.rebind("DELETE FROM dev_recovery_code WHERE developer_id = ?"), devID)
		return err
	})
}

// checkSecondFactor accepts a TOTP code of a time step later than the last
// accepted one (no replay), or an unused recovery code (then used).
func (s *Service) checkSecondFactor(ctx context.Context, d *Developer, code string) (bool, error) {
	code = strings.TrimSpace(code)
	if d.totpSecret == "" || code == "" || len(code) > 64 {
		return false, nil
	}
	if len(code) == 6 && strings.Trim(code, "0123456789") == "" {
		secret, err := s.open(d.totpSecret)
		if err != nil {
			return false, err
		}
		step, ok := s.checkCode(secret, code, d.totpStep)
		if !ok {
			return false, nil
		}
		res, err := s.w.ExecContext(ctx, s.rebind("UPDATE dev_developer SET totp_step = ? WHERE id = ? AND totp_step < ?"), step, d.ID, step)
		if err != nil {
			return false, err
		}
		n, _ := res.RowsAffected()
		return n == 1, nil
	}
	res, err := s.w.ExecContext(ctx, s.rebind("UPDATE dev_recovery_code SET used_at = ? WHERE developer_id = ? AND code_hash = ? AND used_at = 0"),
		s.now().Unix(), d.ID, hashToken(normalizeRecovery(code)))
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// checkCode compares code with the codes of the current time step and its
// neighbours (clock drift), in constant time, and returns the matching
// step if it is later than after.
func (s *Service) checkCode(secret, code string, after int64) (int64, bool) {
	now := s.now()
	cur := now.Unix() / totpPeriod
	found := int64(0)
	for _, step := range []int64{cur - 1, cur, cur + 1} {
		want, err := totp.GenerateCodeCustom(secret, time.Unix(step*totpPeriod, 0), totp.ValidateOpts{Period: totpPeriod, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
		if err != nil {
			return 0, false
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 && step > after {
			found = step
		}
	}
	return found, found != 0
}

// recoveryCode is 80 random bits as xxxx-xxxx-xxxx-xxxx (base32).
func recoveryCode() string {
	b := make([]byte, 10)
	_, _ = rand.Read(b)
	s := strings.ToLower(base32.StdEncoding.EncodeToString(b))
	return s[0:4] + "-" + s[4:8] + "-" + s[8:12] + "-" + s[12:16]
}

func normalizeRecovery(c string) string {
	return strings.ToLower(strings.NewReplacer("-", "", " ", "").Replace(strings.TrimSpace(c)))
}

// sealAD binds sealed TOTP secrets to their purpose.
var sealAD = []byte("lapis developer TOTP secret")

// seal encrypts a TOTP secret with the KEK, or keeps it as "plain:" when
// there is none.
func (s *Service) seal(secret string) (string, error) {
	if s.kek == nil {
		return "plain:" + secret, nil
	}
	gcm := s.kek
	nonce := make([]byte, gcm.NonceSize())
	_, _ = rand.Read(nonce)
	return "gcm:" + base64.RawStdEncoding.EncodeToString(gcm.Seal(nonce, nonce, []byte(secret), sealAD)), nil
}

func (s *Service) open(sealed string) (string, error) {
	if v, ok := strings.CutPrefix(sealed, "plain:"); ok {
		return v, nil
	}
	v, ok := strings.CutPrefix(sealed, "gcm:")
	if !ok || s.kek == nil {
		return "", errors.New("developer: a TOTP secret cannot be opened (wrong or missing key)")
	}
	b, err := base64.RawStdEncoding.DecodeString(v)
	if err != nil {
		return "", errors.New("developer: corrupt TOTP secret")
	}
	gcm := s.kek
	if len(b) < gcm.NonceSize() {
		return "", errors.New("developer: corrupt TOTP secret")
	}
	p, err := gcm.Open(nil, b[:gcm.NonceSize()], b[gcm.NonceSize():], sealAD)
	if err != nil {
		return "", errors.New("developer: a TOTP secret cannot be opened (wrong key)")
	}
	return string(p), nil
}
