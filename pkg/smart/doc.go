// Package smart is the client side of SMART Backend Services authorization
// (HL7 SMART App Launch, "Backend Services"): the OAuth 2.0
// client-credentials grant in which the client proves who it is with a JWT
// it signs with its private key (a "client assertion"), and gets a
// short-lived bearer token for its FHIR requests.
//
// The contract, in the order a caller meets it:
//
//   - LoadKey reads the client's private key from a PEM file (PKCS#1,
//     PKCS#8 or SEC1), a JWK or a JWKS. An RSA key (2048 bits or more)
//     signs RS384, an EC P-384 key ES384: the two algorithms SMART lists.
//     The key's kid, which goes in every assertion's header and which the
//     server matches against the JWKS the client registered, is the JWK's
//     own kid, else the key id the caller gives, else the RFC 7638
//     thumbprint of the public key.
//   - Discover reads [base]/.well-known/smart-configuration for the token
//     endpoint when the caller has no token URL.
//   - TokenSource fetches, caches and renews the access token, one fetch
//     at a time however many goroutines ask; Invalidate drops a token the
//     server refused (a 401).
//
// Errors are one line each and say which file, URL or answer they are
// about. None of them, and no String or GoString of a type here, ever holds
// key material, a client assertion or an access token; URLs in errors lose
// their user info and query string. The package depends on nothing else of
// fhirbulk.
package smart
