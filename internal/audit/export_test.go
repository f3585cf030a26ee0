package audit

// OpenStores is stores for the external tests (package audit_test).
var OpenStores = stores
