
ƒ
?

	10.0.1.10’Â"*spiffe://cluster.local/ns/shop/sa/frontendA

	10.0.1.20øF"-spiffe://cluster.local/ns/shop/sa/productpage"}{
1POST
:methodPOST

:authoritysvc.shop:9080
:path/products/42"/products/42*svc.shop:90802httpRHTTP/1.1