// Private access to PostgreSQL (deployed only when postgresPublicAccess is false): a VNet with one
// subnet delegated to the Flex Consumption app (outbound VNet integration) and one delegated to the
// PostgreSQL server, plus the private DNS zone that resolves the server's name inside the VNet.

@description('Required. Name of the virtual network.')
param name string

@description('Optional. Location of the network resources.')
param location string = resourceGroup().location

@description('Optional. Tags applied to the network resources.')
param tags object = {}

@description('Optional. Address space of the VNet.')
param addressPrefix string = '10.42.0.0/16'

@description('Optional. Prefix of the subnet the Function App integrates with.')
param appSubnetPrefix string = '10.42.1.0/24'

@description('Optional. Prefix of the subnet delegated to PostgreSQL.')
param postgresSubnetPrefix string = '10.42.2.0/24'

@description('Required. Name prefix of the two network security groups.')
param networkSecurityGroupPrefix string

@description('Required. Private DNS zone for the server; must end in .postgres.database.azure.com.')
param postgresPrivateDnsZoneName string

var subnets = [
  {
    name: 'snet-app'
    prefix: appSubnetPrefix
    delegation: 'Microsoft.App/environments'
  }
  {
    name: 'snet-postgres'
    prefix: postgresSubnetPrefix
    delegation: 'Microsoft.DBforPostgreSQL/flexibleServers'
  }
]

// Default rules only (VNet-internal traffic allowed, inbound from the internet denied); one NSG
// per subnet so either can be tightened alone.
resource networkSecurityGroups 'Microsoft.Network/networkSecurityGroups@2024-05-01' = [for subnet in subnets: {
  name: '${networkSecurityGroupPrefix}${subnet.name}'
  location: location
  tags: tags
  properties: {
    securityRules: []
  }
}]

resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        addressPrefix
      ]
    }
    subnets: [for (subnet, i) in subnets: {
      name: subnet.name
      properties: {
        addressPrefix: subnet.prefix
        networkSecurityGroup: {
          id: networkSecurityGroups[i].id
        }
        delegations: [
          {
            name: 'delegation'
            properties: {
              serviceName: subnet.delegation
            }
          }
        ]
      }
    }]
  }
}

resource postgresDnsZone 'Microsoft.Network/privateDnsZones@2024-06-01' = {
  name: postgresPrivateDnsZoneName
  location: 'global'
  tags: tags
}

resource postgresDnsZoneLink 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2024-06-01' = {
  parent: postgresDnsZone
  name: '${name}-link'
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnet.id
    }
  }
}

@description('The VNet\'s name.')
output name string = vnet.name

@description('Subnet for the Function App\'s VNet integration.')
output appSubnetId string = vnet.properties.subnets[0].id

@description('Subnet delegated to PostgreSQL.')
output postgresSubnetId string = vnet.properties.subnets[1].id

@description('The private DNS zone the server registers in.')
output postgresPrivateDnsZoneId string = postgresDnsZone.id
