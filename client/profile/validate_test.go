package profile

import "testing"

// TestAuthValidate: each method requires its fields, in order, and
// refuses a secret it does not use (login may carry a client secret);
// backend_services takes RS384 or ES384 only.
func TestAuthValidate(t *testing.T) {
	for _, c := range []struct {
		name string
		a    Auth
		want string
	}{
		{"none", Auth{}, ""},
		{"none with key", Auth{Method: MethodNone, APIKey: "env:K"}, "api_key is not used by method none"},
		{"default with secret", Auth{ClientSecret: "env:S"}, "client_secret is not used by method none"},
		{"apikey", Auth{Method: MethodAPIKey, APIKey: "env:K"}, ""},
		{"apikey without key", Auth{Method: MethodAPIKey}, "method apikey needs api_key"},
		{"apikey with key file", Auth{Method: MethodAPIKey, APIKey: "env:K", PrivateKey: "file:k"}, "private_key is not used by method apikey"},
		{"basic", Auth{Method: MethodBasic, Username: "u", Password: "env:P"}, ""},
		{"basic without user", Auth{Method: MethodBasic, Password: "env:P"}, "method basic needs username"},
		{"basic without password", Auth{Method: MethodBasic, Username: "u"}, "method basic needs password"},
		{"basic with key", Auth{Method: MethodBasic, Username: "u", Password: "env:P", APIKey: "env:K"}, "api_key is not used by method basic"},
		{"client credentials", Auth{Method: MethodClientCredentials, ClientID: "c", ClientSecret: "env:S"}, ""},
		{"client credentials without id", Auth{Method: MethodClientCredentials, ClientSecret: "env:S"}, "method client_credentials needs client_id"},
		{"client credentials without secret", Auth{Method: MethodClientCredentials, ClientID: "c"}, "method client_credentials needs client_secret"},
		{"client credentials with password", Auth{Method: MethodClientCredentials, ClientID: "c", ClientSecret: "env:S", Password: "env:P"}, "password is not used by method client_credentials"},
		{"backend", Auth{Method: MethodBackendServices, ClientID: "c", PrivateKey: "file:k", Alg: "ES384"}, ""},
		{"backend without key", Auth{Method: MethodBackendServices, ClientID: "c", Alg: "HS256"}, "method backend_services needs private_key"},
		{"backend bad alg", Auth{Method: MethodBackendServices, ClientID: "c", PrivateKey: "file:k", Alg: "HS256", APIKey: "env:K"}, `alg "HS256": use RS384 or ES384`},
		{"backend with secret", Auth{Method: MethodBackendServices, ClientID: "c", PrivateKey: "file:k", ClientSecret: "env:S"}, "client_secret is not used by method backend_services"},
		{"login", Auth{Method: MethodLogin, ClientID: "c"}, ""},
		{"login confidential", Auth{Method: MethodLogin, ClientID: "c", ClientSecret: "env:S"}, ""},
		{"login without id", Auth{Method: MethodLogin}, "method login needs client_id"},
		{"login with key", Auth{Method: MethodLogin, ClientID: "c", PrivateKey: "file:k"}, "private_key is not used by method login"},
		{"unknown", Auth{Method: "magic", APIKey: "env:K"}, `unknown method "magic" (none, apikey, basic, client_credentials, backend_services, login)`},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := ""
			if err := c.a.validate(); err != nil {
				got = err.Error()
			}
			if got != c.want {
				t.Errorf("validate() = %q, want %q", got, c.want)
			}
		})
	}
}
