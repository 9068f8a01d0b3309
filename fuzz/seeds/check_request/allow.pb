
ù
?

	10.0.1.10í¬"*spiffe://cluster.local/ns/shop/sa/frontendA

	10.0.1.20¯F"-spiffe://cluster.local/ns/shop/sa/productpage"ñì
1GET"
:path/products/42?currency=eur
:methodGET

:authoritysvc.shop:9080"/products/42?currency=eur*svc.shop:90802httpRHTTP/1.1