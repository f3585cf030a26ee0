package portal

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/lapis-health/lapis/internal/testutil/browsertest"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// TestBrowserSignUpToTOTP walks the portal as a person would, in headless
// Chromium on SQLite: sign up, open the verification link from the mail,
// log in, accept the terms, enrol TOTP with the shown key, log out and
// log in again with a code.
func TestBrowserSignUpToTOTP(t *testing.T) {
	e := newEnv(t, nil)
	ctx := browsertest.New(t, browsertest.Options{Width: 420, Height: 900}) // a phone-sized window
	base := e.srv.URL
	const email = "browser@example.org"
	bk := newBrowserKit(t, ctx, "portal-")
	step, screenshot := bk.step, bk.screenshot
	mainText := func() string { t.Helper(); return bk.read(chromedp.Text(chromedp.CSS("main"))) }
	css := func(s string) chromedp.CSS { return chromedp.CSS(s) }
	step("open sign-up", chromedp.Navigate(base+"/portal/signup"), chromedp.WaitVisible(chromedp.ID("email")))
	screenshot("signup")
	step("sign up",
		chromedp.SendKeys(chromedp.ID("email"), email),
		chromedp.SendKeys(chromedp.ID("name"), "Browser Dev"),
		chromedp.SendKeys(chromedp.ID("organization"), "Browser Labs"),
		chromedp.SendKeys(chromedp.ID("password"), "correct horse battery"),
		chromedp.SendKeys(chromedp.ID("password2"), "correct horse battery"),
		chromedp.Click(css(`form[action$="/signup"] button[type="submit"]`)),
		// The answer's "Log in" button: the sign-up form's own "I have an
		// account" link also matched a[href$="/login"], so the wait could
		// end before the page changed and the next read hit the page
		// being left ("Cannot find context", or the form's text).
		chromedp.WaitVisible(css(`main .card .actions a.button[href$="/login"]`)),
	)
	if !strings.Contains(mainText(), "Check your email") {
		t.Fatal("no confirmation after sign-up")
	}
	tok := e.mailedToken(email)
	step("verify",
		chromedp.Navigate(base+"/portal/verify?token="+tok),
		chromedp.Click(css(`form[action$="/verify"] button`)),
		chromedp.WaitVisible(css(`a.button[href$="/login"]`)),
	)
	if !strings.Contains(mainText(), "is verified") {
		t.Fatal("not verified")
	}
	step("log in",
		chromedp.Click(css(`a.button[href$="/login"]`)),
		chromedp.WaitVisible(chromedp.ID("password")),
		chromedp.SendKeys(chromedp.ID("email"), email),
		chromedp.SendKeys(chromedp.ID("password"), "correct horse battery"),
		chromedp.Click(css(`form[action$="/login"] button[type="submit"]`)),
		chromedp.WaitVisible(css(`nav a[aria-current="page"][href$="/portal/"]`)),
	)
	if txt := mainText(); !strings.Contains(txt, "Browser Labs") || !strings.Contains(txt, "current terms of use") {
		t.Fatalf("dashboard: %s", txt)
	}
	step("accept terms",
		chromedp.Click(css(`p.note a[href$="/terms"]`)),
		chromedp.WaitVisible(chromedp.ID("accept-terms")),
		chromedp.Click(chromedp.ID("accept-terms")),
		chromedp.WaitVisible(css(`nav a[aria-current="page"][href$="/portal/"]`)),
	)
	if strings.Contains(mainText(), "current terms of use") {
		t.Fatal("the terms banner is still shown")
	}
	screenshot("dashboard")
	step("organisation", chromedp.Navigate(base+"/portal/org"), chromedp.WaitVisible(chromedp.ID("iemail")))
	screenshot("org")
	step("enrol TOTP",
		chromedp.Navigate(base+"/portal/account"),
		chromedp.Click(css(`form[action$="/totp/enroll"] button`)),
		chromedp.WaitVisible(chromedp.ID("totp-secret")),
		chromedp.WaitVisible(css("img.qr")),
	)
	secret, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("totp-secret")))
	if err != nil {
		t.Fatal(err)
	}
	screenshot("totp")
	gen := func() string {
		c, err := totp.GenerateCodeCustom(strings.TrimSpace(secret), e.clock.Now(), totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	step("confirm TOTP",
		chromedp.SendKeys(chromedp.ID("code"), gen()),
		chromedp.Click(css(`form[action$="/totp/confirm"] button`)),
		chromedp.WaitVisible(chromedp.ID("recovery")),
	)
	if !strings.Contains(mainText(), "Two-step verification is on") {
		t.Fatal("TOTP not on")
	}
	e.clock.Add(30 * time.Second) // the enrolment code cannot be replayed
	step("log out and in with TOTP",
		chromedp.Click(css(`form[action$="/logout"] button`)),
		chromedp.WaitVisible(chromedp.ID("password")),
		chromedp.SendKeys(chromedp.ID("email"), email),
		chromedp.SendKeys(chromedp.ID("password"), "correct horse battery"),
		chromedp.Click(css(`form[action$="/login"] button[type="submit"]`)),
		chromedp.WaitVisible(css(`form[action$="/login/totp"]`)),
		chromedp.SendKeys(chromedp.ID("code"), gen()),
		chromedp.Click(css(`form[action$="/login/totp"] button`)),
		chromedp.WaitVisible(css(`nav a[aria-current="page"][href$="/portal/"]`)),
	)
}

// browserKit is what the browser tests share: steps that fail with the
// page's main element, and screenshots to LAPIS_SCREENSHOT_DIR when set
// (README images), else to the test's temporary folder.
type browserKit struct {
	t      *testing.T
	ctx    context.Context
	shots  string
	prefix string // of the screenshot files' names
}

func newBrowserKit(t *testing.T, ctx context.Context, prefix string) *browserKit {
	shots := os.Getenv("LAPIS_SCREENSHOT_DIR")
	if shots == "" {
		shots = t.TempDir()
	}
	return &browserKit{t: t, ctx: ctx, shots: shots, prefix: prefix}
}

// step runs the actions of the step name.
func (b *browserKit) step(name string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		html, _ := chromedp.Run(b.ctx, chromedp.OuterHTML(chromedp.CSS("main")))
		b.t.Fatalf("%s: %v\npage: %s", name, err, html)
	}
}

// read runs a query of the page's text.
func (b *browserKit) read(q chromedp.Action[string]) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, q)
	if err != nil {
		b.t.Fatal(err)
	}
	return s
}

// screenshot saves the whole page as PREFIX+name+".png".
func (b *browserKit) screenshot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatal(err)
	}
	if len(png) < 1000 || !strings.HasPrefix(string(png), "\x89PNG") {
		b.t.Fatalf("screenshot %s is not a PNG", name)
	}
	if err := os.WriteFile(filepath.Join(b.shots, b.prefix+name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}
